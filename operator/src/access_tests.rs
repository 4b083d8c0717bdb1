//! Table tests of the trust rules: every path a TaskQueue can take to a URL.

use super::*;

fn policy(allowed: &[&str], plain_http_anywhere: bool) -> AccessPolicy {
    AccessPolicy {
        default_url: "http://rabbitmq.warren-system.svc:15672".into(),
        allowed: allowed
            .iter()
            .map(|p| p.parse().expect("pattern"))
            .collect(),
        plain_http_anywhere,
    }
}

type Outcome = Result<Grant, AccessRefused>;

fn operator(url: &str) -> Outcome {
    Ok(Grant {
        url: url.into(),
        credentials: CredentialSource::Operator,
    })
}

fn secret(url: &str) -> Outcome {
    Ok(Grant {
        url: url.into(),
        credentials: CredentialSource::Secret("creds".into()),
    })
}

#[test]
fn each_path_to_a_url() {
    let allowed = [
        "https://rabbit.prod.example.com",
        "http://*.queues.svc.cluster.local:15672",
        "https://shared.example.com/mgmt/",
    ];
    let rules = policy(&allowed, false);
    let default = "http://rabbitmq.warren-system.svc:15672";
    let cases: Vec<(Option<&str>, Option<&str>, Outcome)> = vec![
        // The operator's own URL, named or not, takes the operator's credentials.
        (None, None, operator(default)),
        (
            Some("http://rabbitmq.warren-system.svc:15672/"),
            None,
            operator(default),
        ),
        (None, Some("creds"), secret(default)),
        // Admin-allowed URLs too: exact origin (default port), subdomain, path prefix.
        (
            Some("https://rabbit.prod.example.com:443"),
            None,
            operator("https://rabbit.prod.example.com:443"),
        ),
        (
            Some("http://a.queues.svc.cluster.local:15672"),
            None,
            operator("http://a.queues.svc.cluster.local:15672"),
        ),
        (
            Some("https://shared.example.com/mgmt/api"),
            None,
            operator("https://shared.example.com/mgmt/api"),
        ),
        // Near misses are not allowed: other port, scheme, path, the bare domain.
        (
            Some("https://rabbit.prod.example.com:8443"),
            None,
            Err(AccessRefused::CredentialsRequired {
                url: "https://rabbit.prod.example.com:8443".into(),
            }),
        ),
        (
            Some("http://queues.svc.cluster.local:15672"),
            None,
            Err(AccessRefused::CredentialsRequired {
                url: "http://queues.svc.cluster.local:15672".into(),
            }),
        ),
        (
            Some("https://shared.example.com/mgmtx"),
            None,
            Err(AccessRefused::CredentialsRequired {
                url: "https://shared.example.com/mgmtx".into(),
            }),
        ),
        (
            Some("https://rabbit.prod.example.com.evil.io"),
            None,
            Err(AccessRefused::CredentialsRequired {
                url: "https://rabbit.prod.example.com.evil.io".into(),
            }),
        ),
        // Another URL with the TaskQueue's own Secret.
        (
            Some("https://broker.example.com"),
            Some("creds"),
            secret("https://broker.example.com"),
        ),
        (
            Some("http://127.0.0.1:9999"),
            Some("creds"),
            secret("http://127.0.0.1:9999"),
        ),
        (
            Some("http://rabbitmq:15672"),
            Some("creds"),
            secret("http://rabbitmq:15672"),
        ),
        (
            Some("http://rabbitmq.team-a.svc.cluster.local:15672"),
            Some("creds"),
            secret("http://rabbitmq.team-a.svc.cluster.local:15672"),
        ),
        // Another URL without one.
        (
            Some("http://127.0.0.1:9999"),
            None,
            Err(AccessRefused::CredentialsRequired {
                url: "http://127.0.0.1:9999".into(),
            }),
        ),
        // Plain http outside the cluster, even with a Secret.
        (
            Some("http://broker.example.com:15672"),
            Some("creds"),
            Err(AccessRefused::PlainHttp {
                url: "http://broker.example.com:15672".into(),
            }),
        ),
        (
            Some("http://10.0.0.8:15672"),
            Some("creds"),
            Err(AccessRefused::PlainHttp {
                url: "http://10.0.0.8:15672".into(),
            }),
        ),
        // Credentials in the URL, and nonsense.
        (
            Some("http://guest:guest@127.0.0.1:15672"),
            Some("creds"),
            Err(AccessRefused::CredentialsInUrl),
        ),
        (
            Some("http://user@rabbitmq:15672"),
            None,
            Err(AccessRefused::CredentialsInUrl),
        ),
        (
            Some("not a url"),
            None,
            Err(AccessRefused::InvalidUrl {
                url: "not a url".into(),
                reason: "relative URL without a base".into(),
            }),
        ),
    ];
    for (url, secret_name, expected) in cases {
        assert_eq!(
            rules.authorize(url, secret_name),
            expected,
            "{url:?} with {secret_name:?}"
        );
    }
}

#[test]
fn plain_http_anywhere_when_the_admin_says_so() {
    let rules = policy(&[], true);
    assert_eq!(
        rules.authorize(Some("http://broker.example.com:15672"), Some("creds")),
        secret("http://broker.example.com:15672")
    );
    // Still not the operator's own credentials.
    assert_eq!(
        rules.authorize(Some("http://broker.example.com:15672"), None),
        Err(AccessRefused::CredentialsRequired {
            url: "http://broker.example.com:15672".into()
        })
    );
}

#[test]
fn admin_allowed_plain_http_is_trusted() {
    let rules = policy(&["http://legacy.example.com:15672"], false);
    assert_eq!(
        rules.authorize(Some("http://legacy.example.com:15672"), None),
        operator("http://legacy.example.com:15672")
    );
}

#[test]
fn patterns_refuse_what_they_cannot_mean() {
    for bad in ["ftp://x", "http://u:p@x", "nonsense", "*.example.com"] {
        assert!(bad.parse::<UrlPattern>().is_err(), "{bad} accepted");
    }
}
