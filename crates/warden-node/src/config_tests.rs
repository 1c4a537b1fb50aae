use super::*;

fn node(peers: usize) -> NodeConfig {
    NodeConfig {
        environment: "prod".into(),
        node_id: "prod-1".into(),
        api_addr: "https://10.0.0.11:8200".into(),
        cluster_addr: "https://10.0.0.11:8201".into(),
        listen_address: "10.0.0.11:8200".into(),
        cluster_listen_address: "10.0.0.11:8201".into(),
        data_dir: "/var/lib/warden/prod/raft".into(),
        tls: ListenerTls {
            cert_file: "/etc/warden/prod/tls/server.crt".into(),
            key_file: "/etc/warden/prod/tls/server.key".into(),
            client_ca_file: "/etc/warden/prod/tls/client-ca.pem".into(),
        },
        peers: (2..2 + peers)
            .map(|i| Peer {
                leader_api_addr: format!("https://10.0.0.1{i}:8200"),
                leader_ca_cert_file: "/etc/warden/prod/tls/ca.pem".into(),
                leader_client_cert_file: "/etc/warden/prod/tls/node.crt".into(),
                leader_client_key_file: "/etc/warden/prod/tls/node.key".into(),
            })
            .collect(),
        audit_file: "/var/log/warden/prod/audit.log".into(),
        audit_description: "Warden audit log".into(),
        prometheus_retention: DEFAULT_PROMETHEUS_RETENTION,
        raft: RaftTuning::default(),
        seal: Seal::default(),
        log_level: "info".into(),
        generated_by: "warden server config".into(),
    }
}

#[test]
fn raft_storage_names_the_node_and_joins_every_peer_with_a_client_certificate() {
    let text = node(2).render().unwrap();
    assert!(
        text.contains("storage \"raft\" {\n  path                   = \"/var/lib/warden/prod/raft\"\n  node_id                = \"prod-1\"\n  performance_multiplier = 1\n"),
        "{text}"
    );
    assert_eq!(text.matches("retry_join {").count(), 2, "{text}");
    for addr in ["https://10.0.0.12:8200", "https://10.0.0.13:8200"] {
        assert!(
            text.contains(&format!("leader_api_addr         = \"{addr}\"")),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("leader_client_cert_file = \"/etc/warden/prod/tls/node.crt\"")
            .count(),
        2
    );
    assert_eq!(
        text.matches("leader_client_key_file  = \"/etc/warden/prod/tls/node.key\"")
            .count(),
        2
    );
    assert_eq!(
        text.matches("leader_ca_cert_file     = \"/etc/warden/prod/tls/ca.pem\"")
            .count(),
        2
    );
}

#[test]
fn a_single_node_has_no_retry_join() {
    let text = node(0).render().unwrap();
    assert!(!text.contains("retry_join"), "{text}");
}

#[test]
fn the_listener_requires_client_certificates_and_offers_only_aead_suites() {
    let text = node(0).render().unwrap();
    for line in [
        "address                            = \"10.0.0.11:8200\"",
        "cluster_address                    = \"10.0.0.11:8201\"",
        "tls_client_ca_file                 = \"/etc/warden/prod/tls/client-ca.pem\"",
        "tls_require_and_verify_client_cert = true",
        "tls_min_version                    = \"tls12\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let suites = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tls_cipher_suites"))
        .expect("cipher suites");
    for suite in suites
        .trim_start_matches([' ', '='])
        .trim_matches('"')
        .split(',')
    {
        assert!(suite.contains("ECDHE"), "{suite}");
        assert!(
            suite.contains("GCM") || suite.contains("CHACHA20"),
            "{suite}"
        );
    }
}

#[test]
fn addresses_telemetry_audit_and_no_mlock() {
    let text = node(0).render().unwrap();
    assert!(text.contains("api_addr     = \"https://10.0.0.11:8200\""));
    assert!(text.contains("cluster_addr = \"https://10.0.0.11:8201\""));
    assert!(text.contains("cluster_name = \"warden-prod\""));
    assert!(text.contains("prometheus_retention_time = \"86400s\""));
    assert!(text.contains("disable_hostname          = true"));
    assert!(text.contains("audit \"file\" \"file\" {"));
    // Identical on every node: a node whose audit stanza differs from the replicated audit
    // table never becomes active.
    assert!(
        text.contains("description = \"Warden audit log\"\n"),
        "{text}"
    );
    assert!(text.contains("file_path = \"/var/log/warden/prod/audit.log\""));
    assert!(text.contains("mode      = \"0600\""));
    // OpenBao does not know disable_mlock (docs/openbao.md, difference 3).
    assert!(!text.contains("mlock"));
}

#[test]
fn paths_are_quoted_so_a_quote_cannot_end_the_string() {
    let mut n = node(0);
    n.data_dir = "/srv/odd\"dir".into();
    let text = n.render().unwrap();
    assert!(
        text.contains("path                   = \"/srv/odd\\\"dir\""),
        "{text}"
    );
}

#[test]
fn bad_addresses_and_ids_are_refused_with_the_field_named() {
    let mut n = node(1);
    n.api_addr = "http://10.0.0.11:8200".into();
    assert!(
        n.render()
            .unwrap_err()
            .to_string()
            .starts_with("api_addr = ")
    );
    let mut n = node(1);
    n.peers[0].leader_api_addr = n.api_addr.clone();
    assert!(n.render().unwrap_err().to_string().contains("own address"));
    let mut n = node(0);
    n.node_id = "prod 1".into();
    assert!(
        n.render()
            .unwrap_err()
            .to_string()
            .starts_with("node_id = ")
    );
}

#[test]
fn election_timeouts_scale_with_the_multiplier() {
    let t = RaftTuning::default().timeouts();
    assert_eq!(t.multiplier, 1);
    assert_eq!(t.election, Duration::from_secs(1));
    let t = RaftTuning {
        performance_multiplier: 0,
    }
    .timeouts();
    assert_eq!(t.multiplier, 5);
    assert_eq!(t.leader_lease, Duration::from_millis(2500));
}
