//! SigV4 verification of arbitrary requests: never a panic, and the same
//! verdict every time. The input is a method line, a path line, a query
//! line, header lines up to an empty line, then the body.
#![no_main]

use gatehouse::aws::sigv4::{verify, Credentials, Signed};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("POST");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().filter(|q| !q.is_empty());
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.trim()))
        {
            headers.append(n, v);
        }
    }
    let creds = Credentials::new([("AKIDEXAMPLE".to_string(), "secret".to_string())]);
    let req = Signed {
        method,
        path,
        query,
        headers: &headers,
        authority: Some("sqs.example"),
        body: body.as_bytes(),
    };
    // 2015-08-30T12:36:00Z, the date of the AWS documentation's examples.
    let now = 1_440_938_160;
    let first = verify(&req, &creds, now);
    assert_eq!(first, verify(&req, &creds, now));
});
