//! Pure hot paths of one governed request: signing and verifying a response, the subject
//! HMAC, ID-number parsing and masking.

use criterion::{Criterion, criterion_group, criterion_main};
use paotui_certs::httpsig::{self, MessageView};
use paotui_certs::{GatewayKey, Jwks, SubjectKey};
use paotui_policies::ids::IdNumber;
use paotui_policies::mask::Mask;

fn bench(c: &mut Criterion) {
    let Ok((key, _)) = GatewayKey::generate() else {
        return;
    };
    let jwks = Jwks {
        keys: vec![key.jwk().clone()],
    };
    let body = br#"{"service":"population.person","fields":[{"name":"name","masked":true}],"withheld":[],"rows":[{"name":"\u5f20*"}],"truncated":false}"#;
    let digest = httpsig::content_digest(body);
    let headers = vec![
        ("content-type", "application/json"),
        ("content-digest", digest.as_str()),
        ("paotui-audit-index", "123456"),
    ];
    let view = MessageView {
        status: Some(200),
        headers: headers.clone(),
        ..Default::default()
    };

    c.bench_function("content_digest_sha256_150B", |b| {
        b.iter(|| httpsig::content_digest(std::hint::black_box(body)))
    });
    c.bench_function("sign_response", |b| {
        b.iter(|| httpsig::sign_response(&key, &view, 1_800_000_000))
    });

    let Ok(sig) = httpsig::sign_response(&key, &view, 1_800_000_000) else {
        return;
    };
    let mut signed = headers.clone();
    signed.push(("signature-input", sig.signature_input.as_str()));
    signed.push(("signature", sig.signature.as_str()));
    let signed_view = MessageView {
        status: Some(200),
        headers: signed,
        ..Default::default()
    };
    c.bench_function("verify_response", |b| {
        b.iter(|| httpsig::verify_response(&jwks, &signed_view, body))
    });

    let sk = SubjectKey::from_bytes(&[7u8; 32]);
    c.bench_function("subject_hmac", |b| {
        b.iter(|| sk.hash(std::hint::black_box("11010519491231002X")))
    });
    c.bench_function("id_number_parse", |b| {
        b.iter(|| IdNumber::parse(std::hint::black_box("11010519491231002X")))
    });
    c.bench_function("mask_address", |b| {
        b.iter(|| {
            Mask::Address.apply(std::hint::black_box(
                "广东省佛山市三水区西南街道健力宝南路12号",
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
