use super::*;
use crate::config::{ClusterConfig, Config};

/// A config whose `server.cluster` is `nats` plus the JSON members in `extra`.
fn cluster(nats: &str, extra: &str) -> Result<ClusterConfig, ConfigError> {
    let text = format!(
        r#"{{"server":{{"cluster":{{"nats":["{nats}"],"name":"a","nodeNumber":1{extra}}}}}}}"#
    );
    Config::from_json(&text).map(|config| config.server.cluster.unwrap())
}

#[test]
fn each_auth_form_is_read() {
    let read = |auth: &str| cluster("nats://h:4222", &format!(r#","auth":{auth}"#)).unwrap();
    assert_eq!(
        read(r#"{"credentialsFile":"/x.creds"}"#).auth,
        Some(ClusterAuth::CredentialsFile("/x.creds".into()))
    );
    assert_eq!(
        read(r#"{"nkeySeedFile":"/x.nk"}"#).auth,
        Some(ClusterAuth::NkeySeedFile("/x.nk".into()))
    );
    assert_eq!(
        read(r#"{"token":"t0k"}"#).auth,
        Some(ClusterAuth::Token("t0k".into()))
    );
    assert_eq!(
        read(r#"{"user":"u","password":"p"}"#).auth,
        Some(ClusterAuth::UserPassword {
            user: "u".into(),
            password: "p".into()
        })
    );
}

#[test]
fn auth_takes_exactly_one_form() {
    for (auth, says) in [
        (r#"{}"#, "none given"),
        (
            r#"{"token":"t","user":"u","password":"p"}"#,
            "several given",
        ),
        (r#"{"user":"u"}"#, "`user` needs `password`"),
        (r#"{"password":"p"}"#, "`password` needs `user`"),
        (r#"{"tokn":"t"}"#, "tokn"),
    ] {
        let error = cluster("nats://h", &format!(r#","auth":{auth}"#)).unwrap_err();
        assert!(error.message.contains(says), "{auth}: {error}");
        assert!(!error.message.contains("\"p\""), "{error}");
    }
    let error = cluster("nats://h", r#","auth":{"token":""}"#).unwrap_err();
    assert_eq!(error.field, "server.cluster.auth.token");
}

#[test]
fn url_credentials_and_auth_together_are_refused() {
    let error = cluster("nats://u:hunter2@h:4222", r#","auth":{"token":"t"}"#).unwrap_err();
    assert_eq!(error.field, "server.cluster.auth");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // Alone, URL credentials keep working.
    let config = cluster("nats://u:hunter2@h:4222", "").unwrap();
    assert_eq!(
        url_credentials(&config.nats[0]),
        Some(("u".to_string(), Some("hunter2".to_string())))
    );
}

#[test]
fn userinfo_is_split_decoded_and_redacted() {
    assert_eq!(url_credentials("nats://h:4222"), None);
    assert_eq!(url_credentials("h:4222"), None);
    assert_eq!(
        url_credentials("tls://s3cr%40t@h:4222"),
        Some(("s3cr@t".to_string(), None))
    );
    assert_eq!(
        url_credentials("u:p%3Aq@h"),
        Some(("u".to_string(), Some("p:q".to_string())))
    );
    assert_eq!(redacted_url("nats://u:p@h:4222"), "nats://***@h:4222");
    assert_eq!(redacted_url("u:p@h"), "***@h");
    assert_eq!(redacted_url("nats://h:4222/x@y"), "nats://h:4222/x@y");
}

#[test]
fn tls_needs_certificate_and_key_together() {
    let ok = cluster("tls://h", r#","tls":{"caFile":"ca.pem"}"#).unwrap();
    assert_eq!(ok.tls.unwrap().client_certificate(), None);
    let error = cluster(
        "tls://h",
        r#","tls":{"caFile":"ca.pem","certFile":"c.pem"}"#,
    )
    .unwrap_err();
    assert_eq!(error.field, "server.cluster.tls");
    let error = cluster(
        "tls://h",
        r#","tls":{"certFile":"c.pem","keyFile":"k.pem"}"#,
    )
    .unwrap_err();
    assert!(error.message.contains("caFile"), "{error}");
}

#[test]
fn debug_never_shows_a_secret() {
    let config = cluster(
        "nats://u:hunter2@h:4222",
        r#","tls":{"caFile":"ca.pem","certFile":"c.pem","keyFile":"k.pem"}"#,
    )
    .unwrap();
    let text = format!("{config:?}");
    assert!(
        !text.contains("hunter2") && text.contains("***@h:4222"),
        "{text}"
    );
    for auth in [
        r#"{"token":"hunter2"}"#,
        r#"{"user":"u","password":"hunter2"}"#,
    ] {
        let config = cluster("nats://h", &format!(r#","auth":{auth}"#)).unwrap();
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && text.contains(REDACTED),
            "{text}"
        );
    }
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "ringcast-cluster-security-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn json(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn credentials(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

#[test]
fn seed_and_credentials_files_are_parsed_without_quoting_them() {
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let account_seed = nkeys::KeyPair::new_account().seed().unwrap();
    let check = |auth: String| {
        cluster("nats://h", &format!(r#","auth":{auth}"#))
            .unwrap()
            .security()
            .check_files()
    };
    let good = TempFile::new(&format!("{seed}\n"));
    check(format!(r#"{{"nkeySeedFile":"{}"}}"#, good.json())).unwrap();
    for (content, says) in [
        (account_seed.clone(), "not a user's"),
        ("SUnotaseed".to_string(), "not an nkey seed"),
    ] {
        let file = TempFile::new(&content);
        let error = check(format!(r#"{{"nkeySeedFile":"{}"}}"#, file.json())).unwrap_err();
        assert_eq!(error.field, "server.cluster.auth.nkeySeedFile");
        assert!(error.message.contains(says), "{error}");
        assert!(!error.to_string().contains(&content), "{error}");
    }
    let missing = check(r#"{"nkeySeedFile":"/nonexistent/seed.nk"}"#.to_string()).unwrap_err();
    assert!(
        missing.message.contains("cannot read /nonexistent/seed.nk"),
        "{missing}"
    );

    let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVIn0.c2ln";
    let creds = TempFile::new(&credentials(jwt, &seed));
    check(format!(r#"{{"credentialsFile":"{}"}}"#, creds.json())).unwrap();
    for (content, says) in [
        (credentials("not-a-jwt", &seed), "does not hold a JWT"),
        (credentials(jwt, &account_seed), "not a user's"),
        (seed.clone(), "no `-----BEGIN NATS USER JWT-----`"),
    ] {
        let file = TempFile::new(&content);
        let error = check(format!(r#"{{"credentialsFile":"{}"}}"#, file.json())).unwrap_err();
        assert_eq!(error.field, "server.cluster.auth.credentialsFile");
        assert!(error.message.contains(says), "{error}");
        assert!(!error.to_string().contains(&seed), "{error}");
        assert!(!error.to_string().contains(&account_seed), "{error}");
    }
}

#[test]
fn tls_files_are_parsed() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["node-a".to_string()])
        .unwrap()
        .signed_by(&client_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let ca_file = TempFile::new(&ca.pem());
    let cert_file = TempFile::new(&client.pem());
    let key_file = TempFile::new(&client_key.serialize_pem());
    let other_key_file = TempFile::new(&other_key.serialize_pem());
    let not_pem = TempFile::new("hello");
    let check = |ca: &TempFile, pair: Option<(&TempFile, &TempFile)>| {
        let pair = pair.map_or(String::new(), |(cert, key)| {
            format!(
                r#","certFile":"{}","keyFile":"{}""#,
                cert.json(),
                key.json()
            )
        });
        let tls = format!(r#","tls":{{"caFile":"{}"{pair}}}"#, ca.json());
        cluster("tls://h", &tls).unwrap().security().check_files()
    };
    check(&ca_file, None).unwrap();
    check(&ca_file, Some((&cert_file, &key_file))).unwrap();
    let error = check(&not_pem, None).unwrap_err();
    assert_eq!(error.field, "server.cluster.tls.caFile");
    let error = check(&ca_file, Some((&cert_file, &not_pem))).unwrap_err();
    assert_eq!(error.field, "server.cluster.tls.keyFile");
    let error = check(&ca_file, Some((&cert_file, &other_key_file))).unwrap_err();
    assert_eq!(error.field, "server.cluster.tls");
    let key_text = other_key.serialize_pem();
    let body = key_text.lines().nth(1).unwrap();
    assert!(!error.to_string().contains(body), "{error}");
}

#[test]
fn a_secret_in_the_wrong_place_is_not_quoted_in_the_error() {
    // A token where `auth`'s object belongs, a URL with its password where a list belongs.
    let error = cluster("nats://h:4222", r#","auth":"s3cret-token""#).unwrap_err();
    assert!(!error.to_string().contains("s3cret"), "{error}");
    let text =
        r#"{"server":{"cluster":{"nats":"nats://u:s3cret@h:4222","name":"a","nodeNumber":1}}}"#;
    let error = Config::from_json(text).unwrap_err();
    assert!(!error.to_string().contains("s3cret"), "{error}");
}
