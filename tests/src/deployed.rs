//! capguard's stack as `template.yaml` deploys it, on this machine: the three function binaries
//! (see [`crate::lambda`]) with the environment the template gives each of them, the secrets in
//! SSM, the schedules in EventBridge Scheduler and the send queue in SQS (all three on moto), the
//! table in DynamoDB Local, and the sandbox as the Cloud API.
//!
//! What AWS itself does between them is played here, as the template declares it:
//! - the HTTP API: each request to a route of a function's `HttpApi` event becomes an HTTP API
//!   payload 2.0 event, and the function's answer the HTTP response;
//! - EventBridge Scheduler: each one-time schedule in the group is deleted and its input handed to
//!   its target (the retry executor) once its time has come;
//! - the SQS event source: each message of the send queue becomes a batch (`BatchSize`) for
//!   send-dispatch, deleted unless the answer names it among `batchItemFailures`.
//!
//! The template's intrinsic functions are resolved against these local resources, with the
//! template's parameter defaults unless the test sets a parameter: a variable the template stops
//! setting, or a reference this stand-in does not know, fails the test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{NaiveDateTime, Utc};
use sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use shared::aws::sdk_config;
use shared::store::dynamo::{DynamoStore, create_table};

use crate::dynamo::{dynamodb_endpoint, unique_table_name};
use crate::lambda::{Answer, Function};
use crate::moto::{fresh_name, moto_endpoint};
use crate::template::{self, template};
use crate::workspace_binary;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// The stack's id: the template derives resource names from its last part.
const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/capguard-local/5f2c8a10-1b2c-4d3e-8f40-0123456789ab";

/// The secrets the stack's SSM parameters hold.
pub struct Secrets {
    pub app_secret: String,
    pub access_token: String,
    pub verify_token: String,
}

/// A running stack. Its processes and drivers stop on drop.
pub struct Stack {
    pub sandbox: SandboxHandle,
    pub table: String,
    functions: BTreeMap<String, Arc<Function>>,
    api_url: String,
    /// Invocations the drivers made that the function answered with an error.
    failures: Arc<Mutex<Vec<String>>>,
    ssm: aws_sdk_ssm::Client,
    /// The SSM parameter names, by the template parameter that names them.
    secret_names: BTreeMap<String, String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The functions' logs.
    _dir: tempfile::TempDir,
}

/// What `!Ref`, `!GetAtt`, the pseudo parameters and the template's conditions stand for here.
struct Names {
    parameters: BTreeMap<String, String>,
    refs: BTreeMap<&'static str, String>,
    attributes: BTreeMap<&'static str, String>,
    /// The template's `Conditions`, unevaluated.
    conditions: serde_yaml::Mapping,
}

impl Names {
    /// Whether the condition named `name` holds with these parameters.
    fn condition(&self, name: &str) -> bool {
        let definition = self.conditions.get(name).unwrap_or_else(|| panic!("template.yaml has no condition {name}"));
        self.holds(definition)
    }

    /// A condition function (`!Equals`, `!Not`, `!Or`, `!And`, `!Condition`) evaluated.
    fn holds(&self, value: &Yaml) -> bool {
        let Yaml::Tagged(tagged) = value else { panic!("{value:?} is not a condition") };
        let items = || tagged.value.as_sequence().cloned().unwrap_or_default();
        match tagged.tag.to_string().as_str() {
            "!Equals" => {
                let sides: Vec<Yaml> = items().iter().map(|side| self.resolve(side)).collect();
                sides[0] == sides[1]
            }
            "!Not" => !self.holds(&items()[0]),
            "!Or" => items().iter().any(|item| self.holds(item)),
            "!And" => items().iter().all(|item| self.holds(item)),
            "!Condition" => self.condition(tagged.value.as_str().expect("a condition's name")),
            other => panic!("the local stack cannot evaluate {other}"),
        }
    }

    /// Whether the resource exists with these parameters (its `Condition`, if any, holds).
    fn exists(&self, resource: &Yaml) -> bool {
        resource["Condition"].as_str().is_none_or(|name| self.condition(name))
    }

    fn reference(&self, name: &str) -> String {
        let pseudo = match name {
            "AWS::Region" => Some(REGION),
            "AWS::AccountId" => Some(ACCOUNT),
            "AWS::Partition" => Some("aws"),
            "AWS::StackId" => Some(STACK_ID),
            "AWS::StackName" => Some("capguard-local"),
            _ => None,
        };
        pseudo
            .map(str::to_owned)
            .or_else(|| self.parameters.get(name).cloned())
            .or_else(|| self.refs.get(name).cloned())
            .unwrap_or_else(|| panic!("template.yaml refers to {name}, which the local stack does not provide"))
    }

    fn attribute(&self, name: &str) -> String {
        self.attributes
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("template.yaml asks for {name}, which the local stack does not provide"))
    }

    /// A value as CloudFormation would resolve it.
    fn resolve(&self, value: &Yaml) -> Yaml {
        let Yaml::Tagged(tagged) = value else { return value.clone() };
        let arguments = &tagged.value;
        let text = |value: &Yaml| match self.resolve(value) {
            Yaml::String(text) => text,
            Yaml::Number(n) => n.to_string(),
            other => panic!("{other:?} is not text"),
        };
        let list = |value: &Yaml| match self.resolve(value) {
            Yaml::Sequence(items) => items,
            other => panic!("{other:?} is not a list"),
        };
        match tagged.tag.to_string().as_str() {
            "!Ref" => Yaml::String(self.reference(&text(arguments))),
            "!GetAtt" => Yaml::String(self.attribute(&text(arguments))),
            "!Sub" => {
                let (pattern, variables) = match arguments {
                    Yaml::Sequence(parts) => (text(&parts[0]), parts[1].as_mapping().cloned().unwrap_or_default()),
                    other => (text(other), Default::default()),
                };
                Yaml::String(self.substitute(&pattern, &variables))
            }
            "!Select" => {
                let parts = list(arguments);
                let index: usize = text(&parts[0]).parse().expect("a !Select index");
                list(&parts[1])[index].clone()
            }
            "!If" => {
                let parts = list_raw(arguments);
                let name = parts[0].as_str().expect("an !If's condition name");
                self.resolve(if self.condition(name) { &parts[1] } else { &parts[2] })
            }
            "!Split" => {
                let parts = list(arguments);
                let (separator, whole) = (text(&parts[0]), text(&parts[1]));
                Yaml::Sequence(whole.split(separator.as_str()).map(|part| Yaml::String(part.to_owned())).collect())
            }
            other => panic!("the local stack cannot resolve {other}"),
        }
    }

    fn substitute(&self, pattern: &str, variables: &serde_yaml::Mapping) -> String {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed ${…}") + start;
            let name = &rest[start + 2..end];
            let value = match variables.get(name) {
                Some(value) => match self.resolve(value) {
                    Yaml::String(text) => text,
                    other => panic!("{name} resolves to {other:?}"),
                },
                None if name.contains('.') => self.attribute(name),
                None => self.reference(name),
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out + rest
    }
}

/// A list as written, its items unresolved (an `!If` resolves only the branch it takes).
fn list_raw(value: &Yaml) -> Vec<Yaml> {
    value.as_sequence().cloned().unwrap_or_else(|| panic!("{value:?} is not a list"))
}

fn environment(template: &Yaml, function: &Yaml, names: &Names) -> Vec<(String, String)> {
    let mut variables = BTreeMap::new();
    for scope in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &function["Properties"]["Environment"]["Variables"],
    ] {
        for (name, value) in scope.as_mapping().into_iter().flatten() {
            let value = match names.resolve(value) {
                Yaml::String(text) => text,
                Yaml::Number(n) => n.to_string(),
                other => panic!("{name:?} resolves to {other:?}"),
            };
            variables.insert(name.as_str().expect("a variable name").to_owned(), value);
        }
    }
    variables.into_iter().collect()
}

impl Stack {
    /// Starts the sandbox from `config`, creates the resources, and starts the functions with the
    /// template's parameters, `parameters` overriding their defaults.
    pub async fn start(config: SandboxConfig, secrets: Secrets, parameters: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new().prefix("capguard-stack-").tempdir().expect("the stack's folder");
        let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
        let aws = sdk_config(Some(&moto_endpoint())).await;

        let table = unique_table_name();
        let store = DynamoStore::connect(Some(&dynamodb_endpoint()), table.clone(), Default::default()).await;
        create_table(store.client(), &table).await.expect("DynamoDB Local creates the table");

        let template = template();
        let mut values: BTreeMap<String, String> = template["Parameters"]
            .as_mapping()
            .expect("Parameters")
            .iter()
            .filter_map(|(name, spec)| {
                let default = match &spec["Default"] {
                    Yaml::String(text) => text.clone(),
                    Yaml::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((name.as_str()?.to_owned(), default))
            })
            .collect();
        // Parameter names of their own, so that tests running at once do not share secrets.
        let ssm = aws_sdk_ssm::Client::new(&aws);
        let mut secret_names = BTreeMap::new();
        for (parameter, secret) in [
            ("AppSecretParameter", &secrets.app_secret),
            ("AccessTokenParameter", &secrets.access_token),
            ("VerifyTokenParameter", &secrets.verify_token),
        ] {
            let name = fresh_name(&format!("capguard-{}", parameter.to_lowercase()));
            put_secret(&ssm, &name, secret).await;
            values.insert(parameter.to_owned(), name.clone());
            secret_names.insert(parameter.to_owned(), name);
        }
        for (name, value) in parameters {
            assert!(values.contains_key(*name), "template.yaml has no parameter {name}");
            values.insert((*name).to_owned(), (*value).to_owned());
        }

        let group = fresh_name("capguard-retries");
        let scheduler = aws_sdk_scheduler::Client::new(&aws);
        scheduler.create_schedule_group().name(&group).send().await.expect("moto creates the schedule group");
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let queue_name = fresh_name("capguard-sends");
        let queue_url =
            sqs.create_queue().queue_name(&queue_name).send().await.expect("moto creates the queue").queue_url;
        let queue_url = queue_url.expect("a queue URL");
        let arn = |service: &str, what: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{what}");
        let names = Names {
            parameters: values,
            refs: BTreeMap::from([
                ("Table", table.clone()),
                ("RetryScheduleGroup", group.clone()),
                ("SendQueue", queue_url.clone()),
            ]),
            attributes: BTreeMap::from([
                ("Table.Arn", arn("dynamodb", &format!("table/{table}"))),
                ("SchedulerRole.Arn", format!("arn:aws:iam::{ACCOUNT}:role/capguard-scheduler")),
                ("SchedulerDeadLetterQueue.Arn", arn("sqs", "capguard-scheduler-dlq")),
                ("SendQueue.Arn", arn("sqs", &queue_name)),
            ]),
            conditions: template["Conditions"].as_mapping().cloned().unwrap_or_default(),
        };

        let mut functions = BTreeMap::new();
        let mut routes = Vec::new();
        let mut retry_arn = None;
        for (binary, resource) in template::functions(&template) {
            if !names.exists(resource) {
                continue;
            }
            let mut env = environment(&template, resource, &names);
            if binary == "retry-executor" {
                retry_arn = env.iter().find(|(k, _)| k == "RETRY_FUNCTION_ARN").map(|(_, v)| v.clone());
            }
            env.extend(
                [
                    ("AWS_REGION", REGION.to_owned()),
                    // DynamoDB Local keeps a database per access key and region: the SDK's test
                    // credentials, which the tests' and the operator commands' clients use.
                    ("AWS_ACCESS_KEY_ID", "ANOTREAL".to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", "notrealrnrELgWzOk3IfjzDKtFBhDby".to_owned()),
                    ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
                    // The endpoints of the emulators, read by the SDK as on any machine.
                    ("AWS_ENDPOINT_URL", moto_endpoint()),
                    ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint()),
                    // The one setting a deployment leaves unset: Meta's address.
                    (shared::config::GRAPH_API_BASE_URL, sandbox.base_url()),
                    ("RUST_LOG", "info".to_owned()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            let timeout = resource["Properties"]["Timeout"].as_u64().expect("each function states its Timeout");
            let log = dir.path().join(format!("{binary}.log"));
            let function_arn = arn("lambda", &format!("function:{binary}"));
            let function =
                Function::start(&workspace_binary(&binary), &function_arn, Duration::from_secs(timeout), &env, &log)
                    .await;
            // One at a time, as Lambda starts each function on its own: its init is its own.
            function.started().await;
            for event in resource["Properties"]["Events"].as_mapping().into_iter().flatten().map(|(_, e)| e) {
                if event["Type"].as_str() == Some("SQS") {
                    let batch = event["Properties"]["BatchSize"].as_u64();
                    assert_eq!(batch, Some(1), "the queue's event source here hands one message a batch");
                }
                if event["Type"].as_str() == Some("HttpApi") {
                    let method = event["Properties"]["Method"].as_str().expect("a route's method").to_owned();
                    let path = event["Properties"]["Path"].as_str().expect("a route's path").to_owned();
                    routes.push((method, path, binary.clone()));
                }
            }
            functions.insert(binary, Arc::new(function));
        }
        let retry_arn = retry_arn.expect("the retry executor knows its own ARN");

        let failures = Arc::new(Mutex::new(Vec::new()));
        let api = Api { routes: Arc::new(routes), functions: functions.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let api_url = format!("http://{}", listener.local_addr().expect("the API's address"));
        let mut tasks = vec![tokio::spawn(async move {
            axum::serve(listener, Router::new().fallback(front).with_state(api)).await.expect("the API serves");
        })];
        sandbox.set_callback_url(format!("{api_url}/webhook"));
        tasks.push(tokio::spawn(fire_schedules(
            scheduler,
            group,
            retry_arn,
            functions["retry-executor"].clone(),
            failures.clone(),
        )));
        tasks.push(tokio::spawn(deliver_queue(sqs, queue_url, functions["send-dispatch"].clone(), failures.clone())));
        Self { sandbox, table, functions, api_url, failures, ssm, secret_names, tasks, _dir: dir }
    }

    /// How long each function took to start (from its process's spawn to its first request for an
    /// invocation), by binary name.
    pub fn init_times(&self) -> Vec<(String, Duration)> {
        let started = |(name, function): (&String, &Arc<Function>)| Some((name.clone(), function.init_time()?));
        self.functions.iter().filter_map(started).collect()
    }

    /// Writes a new value into the SSM parameter that the template parameter `parameter` names
    /// (`AccessTokenParameter`, …), as an operator rotating a secret does.
    pub async fn rotate_secret(&self, parameter: &str, value: &str) {
        let name = self.secret_names.get(parameter).unwrap_or_else(|| panic!("no secret parameter {parameter}"));
        put_secret(&self.ssm, name, value).await;
    }

    /// The HTTP API's address.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Invocations by the scheduler or the queue that the function failed.
    pub fn failed_invocations(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// The logs of the three functions' last lines, for a failure message.
    pub fn logs(&self) -> String {
        self.functions.values().map(|f| format!("--- {}\n{}\n", f.name(), f.log_tail())).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for function in self.functions.values() {
            function.stop();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

#[derive(Clone)]
struct Api {
    routes: Arc<Vec<(String, String, String)>>,
    functions: BTreeMap<String, Arc<Function>>,
}

/// The HTTP API: a request on a declared route becomes a payload 2.0 event for its function.
async fn front(State(api): State<Api>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let Some((_, _, binary)) = api.routes.iter().find(|(m, p, _)| *m == method.as_str() && *p == path) else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), Value::String(value.to_str().ok()?.to_owned()))))
        .collect();
    let query = uri.query().unwrap_or_default().to_owned();
    let parameters: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), Value::String(v.to_owned())))
        })
        .collect();
    let route_key = format!("{method} {path}");
    let now = Utc::now();
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "queryStringParameters": if parameters.is_empty() { Value::Null } else { Value::Object(parameters) },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "local",
            "http": { "method": method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "local" },
            "requestId": format!("{}", now.timestamp_nanos_opt().unwrap_or_default()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": BASE64.encode(&body),
        "isBase64Encoded": true,
    });
    match api.functions[binary].invoke(&event).await {
        Ok(answer) => http_response(&answer),
        // An HTTP API answers a failed integration with a 500 of its own.
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"Internal Server Error"}"#).into_response(),
    }
}

fn http_response(answer: &Value) -> Response {
    let status =
        answer["statusCode"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::OK);
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        BASE64.decode(body).expect("a base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = (status, body).into_response();
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), value.as_str().map(axum::http::HeaderValue::from_str))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// EventBridge Scheduler: fires each one-time schedule of `group` at its time (deleting it first,
/// as `ActionAfterCompletion: DELETE` does once the target is invoked), asynchronously.
async fn fire_schedules(
    client: aws_sdk_scheduler::Client,
    group: String,
    target: String,
    function: Arc<Function>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let listed = match client.list_schedules().group_name(&group).send().await {
            Ok(listed) => listed.schedules,
            Err(e) => {
                failures.lock().unwrap().push(format!("listing the schedules: {e}"));
                Vec::new()
            }
        };
        for summary in listed {
            let Some(name) = summary.name else { continue };
            let Ok(schedule) = client.get_schedule().group_name(&group).name(&name).send().await else { continue };
            let expression = schedule.schedule_expression.unwrap_or_default();
            let at = expression
                .strip_prefix("at(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|time| NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S").ok())
                .unwrap_or_else(|| panic!("schedule {name} is not a one-time at() schedule: {expression}"));
            if at.and_utc() > Utc::now() {
                continue;
            }
            let schedule_target = schedule.target.expect("a schedule has a target");
            assert_eq!(schedule_target.arn, target, "schedule {name} targets another function");
            let input: Value =
                serde_json::from_str(schedule_target.input.as_deref().unwrap_or("{}")).expect("JSON input");
            if client.delete_schedule().group_name(&group).name(&name).send().await.is_err() {
                continue;
            }
            let (function, failures) = (function.clone(), failures.clone());
            tokio::spawn(async move { record(&failures, &name, function.invoke(&input).await) });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The SQS event source of send-dispatch: one message a batch, deleted unless reported failed.
async fn deliver_queue(
    client: aws_sdk_sqs::Client,
    url: String,
    function: Arc<Function>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let received =
            client.receive_message().queue_url(&url).max_number_of_messages(1).wait_time_seconds(1).send().await;
        let Ok(received) = received else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for message in received.messages.unwrap_or_default() {
            let id = message.message_id.clone().unwrap_or_default();
            let event = json!({ "Records": [{
                "messageId": id,
                "receiptHandle": message.receipt_handle,
                "body": message.body,
                "attributes": { "ApproximateReceiveCount": "1" },
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:send-queue"),
                "awsRegion": REGION,
            }]});
            let answer = function.invoke(&event).await;
            let failed = failed(&answer);
            record(&failures, &format!("queue message {id}"), answer);
            if !failed
                && let Some(handle) = message.receipt_handle
                && let Err(e) = client.delete_message().queue_url(&url).receipt_handle(handle).send().await
            {
                failures.lock().unwrap().push(format!("deleting queue message {id}: {e}"));
            }
        }
    }
}

async fn put_secret(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("moto stores the parameter");
}

/// Whether an invocation failed: an error, or a batch answer naming failed items.
fn failed(answer: &Answer) -> bool {
    match answer {
        Ok(value) => value["batchItemFailures"].as_array().is_some_and(|failed| !failed.is_empty()),
        Err(_) => true,
    }
}

fn record(failures: &Mutex<Vec<String>>, what: &str, answer: Answer) {
    if failed(&answer) {
        failures.lock().unwrap().push(format!("{what}: {answer:?}"));
    }
}
