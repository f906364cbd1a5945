//! The admin subcommands' client in this process: each way a command fails says what to fix,
//! and `--jwks` is read inline or from a file.

use countersign::admin_client::{
    call, run_approver, run_auditor, run_client, run_submitter, ApproverCmd, AuditorCmd, CliError,
    ClientCmd, SubmitterCmd, Target,
};
use serde_json::json;

use crate::common::*;

fn target(s: &Server) -> Target {
    Target {
        url: format!("{}/", s.url),
        data_dir: s.data_dir.clone(),
    }
}

fn add_jwt_client(id: &str, jwks: &str, t: &Target) -> ClientCmd {
    ClientCmd::Add {
        id: id.into(),
        secret: None,
        auth_method: "private_key_jwt".into(),
        mode: "poll".into(),
        notification_endpoint: None,
        jwks: Some(jwks.into()),
        approvers: Vec::new(),
        json: false,
        target: t.clone(),
    }
}

/// `GET path` of the admin API, which must succeed.
async fn admin_get(t: &Target, path: &str) -> serde_json::Value {
    call(t, reqwest::Method::GET, path, None).await.unwrap()
}

fn assert_not_found(e: &CliError) {
    assert!(
        matches!(e, CliError::Refused { status, .. } if status.as_u16() == 404),
        "{e:?}"
    );
}

const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

#[tokio::test]
async fn each_failure_names_its_cause() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();

    let no_token = Target {
        url: s.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    let e = call(&no_token, reqwest::Method::GET, "/v1/admin/clients", None)
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::NoToken { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot read the admin token ") && msg.contains("admin.token"),
        "{msg}"
    );
    assert!(msg.ends_with("(run this on the server's machine, with its --data-dir)"));

    // Nothing listens on a port just freed.
    let nobody = format!("http://127.0.0.1:{}", crate::process::free_port());
    let unreachable = Target {
        url: nobody.clone(),
        data_dir: s.data_dir.clone(),
    };
    let e = call(
        &unreachable,
        reqwest::Method::GET,
        "/v1/admin/clients",
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, CliError::Unreachable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("no server answers at {nobody} (is it running?): ")),
        "{e}"
    );

    let t = target(&s);
    let e = call(
        &t,
        reqwest::Method::POST,
        "/v1/admin/clients",
        Some(json!({"client_id": "a@b"})),
    )
    .await
    .unwrap_err();
    let CliError::Refused { status, body } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(status.as_u16(), 400);
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(e
        .to_string()
        .starts_with("the server refused (400 Bad Request): {"));

    // A 2xx that is not JSON: the checkpoint is a signed note.
    let e = call(&t, reqwest::Method::GET, "/checkpoint", None)
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::BadAnswer(_)), "{e:?}");
    assert!(e.to_string().starts_with("unexpected answer: "), "{e}");

    // The same failures come out of the commands.
    let e = run_client(ClientCmd::List {
        json: false,
        target: no_token.clone(),
    })
    .await
    .unwrap_err();
    assert!(matches!(e, CliError::NoToken { .. }), "{e:?}");
    let e = run_approver(ApproverCmd::List {
        json: true,
        target: unreachable.clone(),
    })
    .await
    .unwrap_err();
    assert!(matches!(e, CliError::Unreachable { .. }), "{e:?}");
    let e = run_submitter(SubmitterCmd::Revoke {
        name: "nobody".into(),
        target: t.clone(),
    })
    .await
    .unwrap_err();
    assert_not_found(&e);
}

#[tokio::test]
async fn jwks_inline_or_from_a_file() {
    let s = Server::start().await;
    let t = target(&s);
    let dir = tempfile::tempdir().unwrap();

    run_client(add_jwt_client("jwt-inline", JWKS, &t))
        .await
        .unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, JWKS).unwrap();
    run_client(add_jwt_client("jwt-file", file.to_str().unwrap(), &t))
        .await
        .unwrap();
    let listed = admin_get(&t, "/v1/admin/clients").await;
    let clients = listed["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2, "{listed}");
    for c in clients {
        assert_eq!(c["auth_method"], "private_key_jwt");
        assert_eq!(
            c["jwks"],
            serde_json::from_str::<serde_json::Value>(JWKS).unwrap()
        );
    }

    let missing = dir.path().join("absent.json");
    let e = run_client(add_jwt_client("jwt-x", missing.to_str().unwrap(), &t))
        .await
        .unwrap_err();
    let CliError::Input(msg) = &e else {
        panic!("{e:?}")
    };
    assert!(
        msg.starts_with(&format!("cannot read --jwks {}: ", missing.display())),
        "{msg}"
    );
    let e = run_client(add_jwt_client("jwt-x", "{not json", &t))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CliError::Input(m) if m.starts_with("--jwks is not JSON: ")),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("--jwks is not JSON: "));
    std::fs::write(&file, "[1, 2").unwrap();
    let e = run_client(add_jwt_client("jwt-x", file.to_str().unwrap(), &t))
        .await
        .unwrap_err();
    assert!(matches!(&e, CliError::Input(m) if m.starts_with("--jwks is not JSON")));
    // Nothing was added by the failed commands.
    let listed = admin_get(&t, "/v1/admin/clients").await;
    assert_eq!(listed["clients"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_commands_change_what_the_api_lists() {
    let s = Server::start().await;
    let t = target(&s);
    run_client(ClientCmd::Add {
        id: "agent-ping".into(),
        secret: Some("s".into()),
        auth_method: "client_secret_basic".into(),
        mode: "ping".into(),
        notification_endpoint: Some("http://127.0.0.1:9/cb".into()),
        jwks: None,
        approvers: Vec::new(),
        json: false,
        target: t.clone(),
    })
    .await
    .unwrap();
    run_client(ClientCmd::List {
        json: false,
        target: t.clone(),
    })
    .await
    .unwrap();
    run_client(ClientCmd::Remove {
        id: "agent-ping".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    let listed = admin_get(&t, "/v1/admin/clients").await;
    assert_eq!(listed["clients"], json!([]));

    run_approver(ApproverCmd::Add {
        id: Some("apv_cli".into()),
        email: "cli@example.com".into(),
        name: Some("Cli".into()),
        target: t.clone(),
    })
    .await
    .unwrap();
    run_approver(ApproverCmd::Link {
        id: "apv_cli".into(),
        recovery: false,
        target: t.clone(),
    })
    .await
    .unwrap();
    run_approver(ApproverCmd::Disable {
        id: "apv_cli".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    run_approver(ApproverCmd::List {
        json: true,
        target: t.clone(),
    })
    .await
    .unwrap();
    let listed = admin_get(&t, "/v1/admin/approvers").await;
    assert_eq!(listed["approvers"][0]["disabled"], true, "{listed}");
    assert_eq!(listed["approvers"][0]["name"], "Cli");
    // A disabled approver gets no new link.
    let e = run_approver(ApproverCmd::Link {
        id: "apv_cli".into(),
        recovery: false,
        target: t.clone(),
    })
    .await
    .unwrap_err();
    assert_not_found(&e);

    run_submitter(SubmitterCmd::Add {
        name: "ci".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    run_submitter(SubmitterCmd::List { target: t.clone() })
        .await
        .unwrap();
    run_submitter(SubmitterCmd::Revoke {
        name: "ci".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    let listed = admin_get(&t, "/v1/admin/submitters").await;
    assert_eq!(listed["submitters"], json!([]), "{listed}");
}

#[tokio::test]
async fn auditor_add_list_revoke() {
    let s = Server::start().await;
    let t = target(&s);
    run_auditor(AuditorCmd::Add {
        name: "ext-audit".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    run_auditor(AuditorCmd::List { target: t.clone() })
        .await
        .unwrap();
    let listed = admin_get(&t, "/v1/admin/auditors").await;
    assert_eq!(listed["auditors"][0]["name"], "ext-audit", "{listed}");
    assert_eq!(
        listed["auditors"][0]["fingerprint"].as_str().unwrap().len(),
        8
    );
    run_auditor(AuditorCmd::Revoke {
        name: "ext-audit".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    let listed = admin_get(&t, "/v1/admin/auditors").await;
    assert_eq!(listed["auditors"], json!([]), "{listed}");
    let e = run_auditor(AuditorCmd::Revoke {
        name: "ext-audit".into(),
        target: t.clone(),
    })
    .await
    .unwrap_err();
    assert_not_found(&e);
}
