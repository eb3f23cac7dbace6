//! A Lambda function as deployed, run on this machine: its real binary (`target/debug/<name>`,
//! as cargo-lambda builds it for AWS) in a process of its own, talking to a stand-in of the Lambda
//! Runtime API on loopback, with nothing in its environment but what it is given.
//!
//! The Runtime API is the one Lambda documents (`/2018-06-01/runtime/...`): the function asks for
//! the next invocation (`GET invocation/next`, which waits until there is one), and answers it
//! (`POST invocation/{id}/response` or `/error`), or reports a failed start (`POST init/error`).
//! Like one Lambda instance, the process takes one invocation at a time; invocations made meanwhile
//! wait their turn.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

/// What an invocation came to: the function's answer, or the error it reported.
pub type Answer = Result<Value, Value>;

struct Pending {
    id: String,
    payload: Vec<u8>,
    answer: oneshot::Sender<Answer>,
}

struct Runtime {
    /// The function's ARN, as the invocation headers name it.
    arn: String,
    /// Each invocation's time, from when the function takes it.
    timeout: Duration,
    queue: Mutex<VecDeque<Pending>>,
    arrived: Notify,
    running: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<String>>,
    /// When the process was spawned.
    spawned_at: OnceLock<Instant>,
    /// How long after its spawn the function first asked for an invocation: its start (the cold
    /// start's init: configuration read, secrets fetched, clients built) took this long.
    started_after: OnceLock<Duration>,
}

/// One function: its process and its Runtime API. The process is killed on drop.
pub struct Function {
    name: String,
    timeout: Duration,
    runtime: Arc<Runtime>,
    child: Mutex<Child>,
    log: PathBuf,
    server: tokio::task::JoinHandle<()>,
    serial: std::sync::atomic::AtomicU64,
}

impl Function {
    /// Starts `binary` with exactly `env` (and the Runtime API's variables), its output appended
    /// to `log`. `timeout` is the function's configured timeout: each invocation's deadline.
    pub async fn start(binary: &Path, arn: &str, timeout: Duration, env: &[(String, String)], log: &Path) -> Self {
        assert!(binary.is_file(), "{} is missing: build the functions (cargo build --workspace)", binary.display());
        let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("function").to_owned();
        let runtime = Arc::new(Runtime {
            arn: arn.to_owned(),
            timeout,
            queue: Default::default(),
            arrived: Notify::new(),
            running: Default::default(),
            init_error: Default::default(),
            spawned_at: OnceLock::new(),
            started_after: OnceLock::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(runtime.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let address = listener.local_addr().expect("the Runtime API's address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the Runtime API serves");
        });
        let output = File::options().create(true).append(true).open(log).expect("the function's log opens");
        let _ = runtime.spawned_at.set(Instant::now());
        let child = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("the log opens twice"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let child = Mutex::new(child);
        Self { name, timeout, runtime, child, log: log.to_owned(), server, serial: Default::default() }
    }

    /// Waits until the function has started (read its configuration and secrets) and asks for
    /// work. Fails the test, with the function's log, if it does not within its timeout.
    pub async fn started(&self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.runtime.started_after.get().is_none() {
            let exited = self.child.lock().unwrap().try_wait().ok().flatten();
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                let init = self.runtime.init_error.lock().unwrap().clone();
                panic!("{} did not start ({exited:?}, init error: {init:?}); its log:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the function took to start: from its process's spawn to its first request for an
    /// invocation. `None` until it has started.
    pub fn init_time(&self) -> Option<Duration> {
        self.runtime.started_after.get().copied()
    }

    /// Invokes the function with `payload` and waits for its answer, as a synchronous invocation
    /// does. Fails the test, with the function's log, if the function never answers.
    pub async fn invoke(&self, payload: &Value) -> Answer {
        let serial = self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{serial}", self.name);
        let (answer, answered) = oneshot::channel();
        let pending = Pending { id, payload: serde_json::to_vec(payload).expect("a JSON payload"), answer };
        self.runtime.queue.lock().unwrap().push_back(pending);
        self.runtime.arrived.notify_one();
        // Waiting invocations queue behind the running one, so allow for a few of them.
        match tokio::time::timeout(self.timeout * 4, answered).await {
            Ok(Ok(answer)) => answer,
            _ => {
                let init = self.runtime.init_error.lock().unwrap().clone();
                panic!("{} did not answer (init error: {init:?}); its log:\n{}", self.name, self.log_tail())
            }
        }
    }

    /// Stops the process (as Lambda retires an instance).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last lines of the function's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.stop();
        self.server.abort();
    }
}

async fn next(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
    if let Some(spawned) = runtime.spawned_at.get() {
        let _ = runtime.started_after.set(spawned.elapsed());
    }
    let pending = loop {
        if let Some(pending) = runtime.queue.lock().unwrap().pop_front() {
            break pending;
        }
        runtime.arrived.notified().await;
    };
    let mut headers = HeaderMap::new();
    let header = |text: &str| HeaderValue::from_str(text).expect("a header value");
    headers.insert("lambda-runtime-aws-request-id", header(&pending.id));
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + runtime.timeout;
    headers.insert("lambda-runtime-deadline-ms", header(&deadline.as_millis().to_string()));
    headers.insert("lambda-runtime-invoked-function-arn", header(&runtime.arn));
    headers.insert("lambda-runtime-trace-id", header("Root=1-00000000-000000000000000000000000;Sampled=0"));
    runtime.running.lock().unwrap().insert(pending.id, pending.answer);
    (StatusCode::OK, headers, pending.payload)
}

fn settle(runtime: &Runtime, id: &str, answer: Answer) -> StatusCode {
    match runtime.running.lock().unwrap().remove(id) {
        Some(waiting) => {
            let _ = waiting.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(runtime): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    settle(&runtime, &id, Ok(json_or_text(&body)))
}

async fn error(State(runtime): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    settle(&runtime, &id, Err(json_or_text(&body)))
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    *runtime.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}
