//! Recall and false positives of the rule-based `redact` stage on a planted-PII corpus, run
//! through the real binary and the shipped pipeline.

use serde_json::{Value, json};

mod common;

use common::{lai, repo};

/// (entity tag, planted values in the formats people write them).
const PLANTED: &[(&str, &[&str])] = &[
    (
        "EMAIL",
        &[
            "jane.doe@example.com",
            "J.Smith+billing@Mail.Example.co.uk",
            "ops-team_2@sub.domain-name.org",
            "a1@b2.io",
            "first.o'brien@example.ie",
        ],
    ),
    (
        "CREDIT_CARD",
        &[
            "4111111111111111",
            "4012 8888 8888 1881",
            "5555-5555-5555-4444",
            "5105105105105100",
            "2221000000000009",
            "378282246310005",
            "3714 496353 98431",
            "6011111111111117",
            "6011-0009-9013-9424",
            "30569309025904",
            "3530 1113 3330 0000",
        ],
    ),
    (
        "IBAN",
        &[
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "ES91 2100 0418 4502 0005 1332",
            "IT60X0542811101000000123456",
            "CH93 0076 2011 6238 5295 7",
            "BE68539007547034",
        ],
    ),
    (
        "SSN",
        &[
            "123-45-6789",
            "078-05-1120",
            "219-09-9999",
            "457-55-5462",
            "536 22 1234",
        ],
    ),
    (
        "IP_ADDRESS",
        &[
            "192.168.0.1",
            "10.0.0.254",
            "8.8.8.8",
            "255.255.255.255",
            "172.16.254.1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "fe80::1ff:fe23:4567:890a",
            "2001:db8::",
            "::ffff:192.0.2.128",
        ],
    ),
    (
        "PHONE",
        &[
            "+1 415 555 0100",
            "+44 20 7946 0958",
            "+49 30 901820",
            "+33 1 23 45 67 89",
            "(212) 555-0147",
            "212-555-0147",
            "1-800-555-0199",
            "020 7946 0958",
            "07700 900123",
            "030/1234567",
        ],
    ),
    (
        "URL",
        &[
            "https://example.com/path?q=1&r=2",
            "http://intranet.local:8080/x",
            "www.example.org/about",
        ],
    ),
];

/// Sentence frames the values are planted in.
const FRAMES: &[&str] = &[
    "Contact: {}",
    "{} is what they gave us.",
    "Please use ({}) from now on.",
    "value={}.",
    "Details:\n\t{}\nThanks",
    "Ref \"{}\", confirmed",
];

/// Text with many numbers and no PII: nothing here may be redacted.
const CLEAN: &[&str] = &[
    "The meeting is on 2024-03-15 at 10:30:00 UTC.",
    "Invoice total: $1,234.56 due 03/15/2024, paid 15.03.2024.",
    "Version 2.14.3 was released with build 20240315.",
    "Call extension 4521 if the printer on floor 3 jams.",
    "Order #98765 shipped to ZIP 94105 in 3 boxes.",
    "Temperature 23.5 C, humidity 45%, wind 12 km/h.",
    "Room 1204, floor 12, building B, desk 7.",
    "ISBN 978-3-16-148410-0 is on the shelf.",
    "Population grew from 1500000 to 2300000 in 10 years.",
    "Use the ratio 3:2:1 for the mix, then wait 12:45 to 13:15.",
    "Coordinates 48.8566, 2.3522 are in Paris.",
    "The score was 10-7 and then 21-14.",
    "Model XR-2000 replaced the GT-350 in 2019.",
    "Pi is 3.14159265358979 and e is 2.71828.",
    "Case 2023/456 was closed on 2023-11-02.",
    "We sold 1,000,000 units at 19.99 each.",
    "std::vector and std::map are C++ containers.",
    "Reach the team on the usual channel.",
];

fn run(records: &[Value]) -> Vec<Value> {
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    let output = lai()
        .args(["run", "-q"])
        .arg(repo("pipelines/redact.toml"))
        .arg("-")
        .write_stdin(input)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// Every planted email, card, IBAN, SSN, IP, phone and URL is removed and tagged as its type.
#[test]
fn planted_pii_is_removed() {
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for (tag, values) in PLANTED {
        for (i, value) in values.iter().enumerate() {
            for frame in FRAMES {
                records.push(json!({ "text": frame.replace("{}", value) }));
                expected.push((*tag, *value, i));
            }
        }
    }
    let out = run(&records);
    assert_eq!(out.len(), records.len());
    let mut missed = Vec::new();
    for (record, (tag, value, _)) in out.iter().zip(&expected) {
        let text = record["text"].as_str().unwrap();
        if text.contains(value) || !text.contains(&format!("[{tag}]")) {
            missed.push(format!("{tag}: {text:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "missed {} of {}:\n{}",
        missed.len(),
        out.len(),
        missed.join("\n")
    );
}

// Numbers that are not PII (dates, times, amounts, versions, ISBNs, ratios) are left alone.
#[test]
fn clean_text_has_no_false_positives() {
    let records: Vec<Value> = CLEAN.iter().map(|t| json!({ "text": t })).collect();
    let out = run(&records);
    let flagged: Vec<String> = out
        .iter()
        .filter(|r| r["redactions"]["count"] != 0)
        .map(|r| r["text"].to_string())
        .collect();
    assert!(
        flagged.is_empty(),
        "false positives:\n{}",
        flagged.join("\n")
    );
}
