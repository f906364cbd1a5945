//! A small in-test tlog-witness (C2SP tlog-witness `add-checkpoint`) for one log, on an
//! ephemeral loopback port, with switches to misbehave: answer a fixed status, forget its
//! state, or be down. Built on the verifier's checkpoint and consistency checks; cosigns with
//! `cosignature/v1`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use countersign_verifier::{
    cosignature_message, verify_checkpoint, verify_consistency, Hash, NoteSignature, VerifierKey,
};
use ed25519_dalek::{Signer, SigningKey};

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As the specification says.
    Honest,
    /// Every request gets this status (403, 422, 503...).
    Status(u16),
    /// Cosigns, but with a timestamp this many seconds in the past.
    SkewedClock(u64),
    /// Cosigns with another key than its own.
    WrongKey,
}

#[derive(Debug)]
struct Inner {
    size: u64,
    root: Hash,
    behaviour: Behaviour,
    requests: u64,
    conflicts: u64,
    repeats: u64,
}

/// A running fake witness.
pub struct FakeWitness {
    /// Its submission prefix (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its cosignature verifier key.
    pub vkey: VerifierKey,
    state: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Ctx {
    log: VerifierKey,
    name: String,
    key: Arc<SigningKey>,
    vkey: VerifierKey,
    state: Arc<Mutex<Inner>>,
}

impl FakeWitness {
    /// Starts a witness named `name` (key from `seed`) for the log with key `log`.
    pub async fn start(name: &str, seed: u8, log: &VerifierKey) -> FakeWitness {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let vkey = VerifierKey::cosignature(name, key.verifying_key().to_bytes()).unwrap();
        let state = Arc::new(Mutex::new(Inner {
            size: 0,
            root: Hash([0; 32]),
            behaviour: Behaviour::Honest,
            requests: 0,
            conflicts: 0,
            repeats: 0,
        }));
        let ctx = Ctx {
            log: log.clone(),
            name: name.to_owned(),
            key: Arc::new(key),
            vkey: vkey.clone(),
            state: state.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .with_state(ctx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWitness {
            url,
            vkey,
            state,
            task,
        }
    }

    /// The `witness` line of a policy naming it.
    pub fn policy_line(&self, name: &str) -> String {
        format!("witness {name} {} {}\n", self.vkey.to_vkey(), self.url)
    }

    /// Changes how it answers.
    pub fn set(&self, b: Behaviour) {
        self.state.lock().unwrap().behaviour = b;
    }

    /// Forgets everything it cosigned (a witness whose state was wiped).
    pub fn wipe(&self) {
        let mut s = self.state.lock().unwrap();
        s.size = 0;
        s.root = Hash([0; 32]);
    }

    /// The size it last cosigned.
    pub fn size(&self) -> u64 {
        self.state.lock().unwrap().size
    }

    /// Requests it got, and how many it answered 409.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.requests, s.conflicts)
    }

    /// Requests that sent again the checkpoint it holds (cosigned again, but nothing new).
    pub fn repeats(&self) -> u64 {
        self.state.lock().unwrap().repeats
    }

    /// Stops it (its port then refuses connections).
    pub fn stop(self) {
        self.task.abort();
    }
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code).unwrap().into_response()
}

async fn add_checkpoint(State(c): State<Ctx>, body: String) -> Response {
    let mut st = c.state.lock().unwrap();
    st.requests += 1;
    if let Behaviour::Status(code) = st.behaviour {
        return status(code);
    }
    let Some((head, note)) = body.split_once("\n\n") else {
        return status(400);
    };
    let mut lines = head.split('\n');
    let Some(old) = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(countersign_verifier::parse_decimal)
    else {
        return status(400);
    };
    let mut proof = Vec::new();
    for l in lines {
        let Ok(b) = base64::engine::general_purpose::STANDARD.decode(l) else {
            return status(400);
        };
        let Ok(h) = <[u8; 32]>::try_from(b) else {
            return status(400);
        };
        proof.push(Hash(h));
    }
    let Ok(v) = verify_checkpoint(note.as_bytes(), &c.log, &[]) else {
        return status(403);
    };
    let cp = v.checkpoint;
    if old > cp.size {
        return status(400);
    }
    if old != st.size {
        st.conflicts += 1;
        return (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{}\n", st.size),
        )
            .into_response();
    }
    if old == cp.size {
        if old > 0 && cp.root != st.root {
            st.conflicts += 1;
            return (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{}\n", st.size),
            )
                .into_response();
        }
        if old > 0 {
            st.repeats += 1;
        }
    } else if old > 0 && verify_consistency(old, cp.size, &st.root, &cp.root, &proof).is_err() {
        return status(422);
    }
    st.size = cp.size;
    st.root = cp.root;
    let mut ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut key = (*c.key).clone();
    match st.behaviour {
        Behaviour::SkewedClock(behind) => ts -= behind,
        Behaviour::WrongKey => key = SigningKey::from_bytes(&[0xee; 32]),
        _ => {}
    }
    let sig = key.sign(cosignature_message(ts, &v.note_text).as_bytes());
    let mut raw = ts.to_be_bytes().to_vec();
    raw.extend_from_slice(&sig.to_bytes());
    NoteSignature {
        name: c.name.clone(),
        key_id: c.vkey.id(),
        signature: raw,
    }
    .to_line()
    .into_response()
}
