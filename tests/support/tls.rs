//! Certificates generated at test time (rcgen): a CA, a server certificate it signed for
//! `localhost` and `127.0.0.1`, and a client certificate it signed (mutual TLS). Nothing is
//! checked in; every run has fresh keys.

/// PEM texts of a test PKI.
#[derive(Debug)]
pub struct TestPki {
    /// The CA certificate.
    pub ca: String,
    /// The server certificate (SANs `localhost`, `127.0.0.1`).
    pub server_cert: String,
    /// Its private key.
    pub server_key: String,
    /// A client certificate for mutual TLS.
    pub client_cert: String,
    /// Its private key.
    pub client_key: String,
}

/// A fresh CA with a server and a client certificate.
pub fn pki() -> TestPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (the servers' side) takes a certificate whose issuer equals its
    // subject for self-signed, and rcgen gives every certificate the same default name.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "canary test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_cert = server.signed_by(&server_key, &ca).expect("server cert");
    let mut client =
        rcgen::CertificateParams::new(vec!["canary".to_owned()]).expect("client params");
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "canary");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let client_cert = client.signed_by(&client_key, &ca).expect("client cert");
    TestPki {
        ca: ca.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}
