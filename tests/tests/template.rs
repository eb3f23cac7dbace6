//! `template.yaml` against the code it deploys: the table as `shared::store::dynamo::schema::TABLE`
//! declares it, the three functions as cargo-lambda builds them, `POST /sends` behind IAM, and
//! every configuration variable the functions read set for each of them.
//!
//! CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt`) parse as tagged YAML values; the checks
//! below only look at plain keys and strings, so they never need to resolve one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use capguard_tests::template::{functions, template, workspace_root};
use serde_yaml::Value;
use shared::config;
use shared::store::dynamo::schema::{KeyAttribute, TABLE};

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    template["Resources"].get(name).unwrap_or_else(|| panic!("template.yaml has no resource {name}"))
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what} is not a plain string: {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what} is not a list: {value:?}"))
}

/// `[{AttributeName, KeyType}]` as (name, key type) pairs, in order.
fn key_schema(value: &Value, what: &str) -> Vec<(String, String)> {
    list(value, what)
        .iter()
        .map(|key| (text(&key["AttributeName"], what).to_owned(), text(&key["KeyType"], what).to_owned()))
        .collect()
}

fn hash_and_range(partition: KeyAttribute, sort: KeyAttribute) -> Vec<(String, String)> {
    vec![(partition.name.to_owned(), "HASH".to_owned()), (sort.name.to_owned(), "RANGE".to_owned())]
}

#[test]
fn the_table_is_declared_as_the_schema_states_it() {
    let template = template();
    let table = resource(&template, "Table");
    assert_eq!(text(&table["Type"], "Table.Type"), "AWS::DynamoDB::Table");
    let properties = &table["Properties"];

    assert_eq!(text(&properties["BillingMode"], "BillingMode"), TABLE.billing_mode);

    let declared: BTreeSet<(String, String)> = list(&properties["AttributeDefinitions"], "AttributeDefinitions")
        .iter()
        .map(|a| {
            (
                text(&a["AttributeName"], "AttributeName").to_owned(),
                text(&a["AttributeType"], "AttributeType").to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> =
        TABLE.attribute_definitions().iter().map(|a| (a.name.to_owned(), a.attribute_type.to_owned())).collect();
    assert_eq!(declared, expected, "AttributeDefinitions");
    assert_eq!(
        list(&properties["AttributeDefinitions"], "AttributeDefinitions").len(),
        expected.len(),
        "each attribute defined once"
    );

    assert_eq!(
        key_schema(&properties["KeySchema"], "KeySchema"),
        hash_and_range(TABLE.partition_key, TABLE.sort_key),
        "the table's KeySchema"
    );

    let indexes: BTreeMap<String, (Vec<(String, String)>, String)> =
        list(&properties["GlobalSecondaryIndexes"], "GlobalSecondaryIndexes")
            .iter()
            .map(|index| {
                let name = text(&index["IndexName"], "IndexName").to_owned();
                let keys = key_schema(&index["KeySchema"], &name);
                let projection = text(&index["Projection"]["ProjectionType"], "ProjectionType").to_owned();
                (name, (keys, projection))
            })
            .collect();
    let expected: BTreeMap<String, (Vec<(String, String)>, String)> = TABLE
        .indexes
        .iter()
        .map(|index| {
            let keys = hash_and_range(index.partition_key, index.sort_key);
            (index.name.to_owned(), (keys, index.projection_type.to_owned()))
        })
        .collect();
    assert_eq!(indexes, expected, "GlobalSecondaryIndexes (name → keys, projection)");

    let ttl = &properties["TimeToLiveSpecification"];
    assert_eq!(text(&ttl["AttributeName"], "TTL attribute"), TABLE.ttl_attribute);
    assert_eq!(ttl["Enabled"].as_bool(), Some(true), "TTL is enabled");
}

/// The workspace's function crates, by package name (each builds one binary of that name).
fn function_crates() -> BTreeSet<String> {
    let dir = workspace_root().join("functions");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| {
            let manifest = entry.ok()?.path().join("Cargo.toml");
            let text = std::fs::read_to_string(manifest).ok()?;
            let name = text.lines().find_map(|line| line.trim().strip_prefix("name = "))?;
            Some(name.trim_matches('"').to_owned())
        })
        .collect()
}

/// A function's property, or the one it inherits from `Globals.Function`.
fn effective<'a>(template: &'a Value, function: &'a Value, property: &str) -> &'a Value {
    function["Properties"].get(property).unwrap_or(&template["Globals"]["Function"][property])
}

#[test]
fn the_four_functions_are_cargo_lambda_builds_of_the_function_crates_on_arm64() {
    let template = template();
    let functions = functions(&template);
    let crates = function_crates();
    assert_eq!(crates.len(), 4, "{crates:?}");
    assert_eq!(functions.keys().cloned().collect::<BTreeSet<_>>(), crates, "one function per crate, by Binary");
    for (binary, function) in &functions {
        assert_eq!(text(&function["Metadata"]["BuildMethod"], "BuildMethod"), "rust-cargolambda", "{binary}");
        assert_eq!(text(effective(&template, function, "Runtime"), "Runtime"), "provided.al2023", "{binary}");
        let architectures: Vec<&str> = list(effective(&template, function, "Architectures"), "Architectures")
            .iter()
            .map(|a| text(a, "an architecture"))
            .collect();
        assert_eq!(architectures, ["arm64"], "{binary}");
        assert_eq!(text(effective(&template, function, "Handler"), "Handler"), "bootstrap", "{binary}");
    }
}

/// The HttpApi routes (method, path) each function serves, with their authorizer if any.
fn routes(function: &Value) -> Vec<(String, String, Option<String>)> {
    let Some(events) = function["Properties"]["Events"].as_mapping() else { return Vec::new() };
    events
        .values()
        .filter(|event| event["Type"].as_str() == Some("HttpApi"))
        .map(|event| {
            let properties = &event["Properties"];
            (
                text(&properties["Method"], "Method").to_uppercase(),
                text(&properties["Path"], "Path").to_owned(),
                properties["Auth"]["Authorizer"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn sends_need_iam_and_the_webhook_is_open_to_meta() {
    let template = template();
    let functions = functions(&template);
    let sends = routes(functions["send-dispatch"]);
    assert!(
        sends.contains(&("POST".into(), "/sends".into(), Some("AWS_IAM".into()))),
        "POST /sends is IAM-authorized: {sends:?}"
    );
    // Meta signs its calls with the app secret, not SigV4: the webhook routes carry no authorizer,
    // and the API has no default one that would apply to them.
    let webhook = routes(functions["webhook-intake"]);
    for method in ["GET", "POST"] {
        assert!(webhook.contains(&(method.into(), "/webhook".into(), None)), "{method} /webhook: {webhook:?}");
    }
    let api = resource(&template, "HttpApi");
    assert_eq!(api["Properties"]["Auth"].get("DefaultAuthorizer"), None, "no default authorizer");
}

/// Every identifier-like token of `source`, its `#[cfg(test)]` module left out.
fn tokens(source: &str) -> BTreeSet<&str> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|t| !t.is_empty()).collect()
}

/// The configuration variables a deployed function reads: the `config` constants that
/// `config/lambda.rs` names, plus those `Settings::from_lookup` (and the `Rules::from_lookup` it
/// calls) reads when `config/lambda.rs` builds the settings with it. Read from the source, so a
/// variable added there is checked here too.
fn variables_read() -> BTreeSet<String> {
    let source = |file: &str| {
        let path = workspace_root().join("shared/src").join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    };
    let (config_rs, lambda_rs) = (source("config/mod.rs"), source("config/lambda.rs"));
    let constants = config_constants(&config_rs);
    let lambda = tokens(&lambda_rs);
    let mut read: BTreeSet<&str> = constants.keys().copied().filter(|name| lambda.contains(name)).collect();
    if lambda_rs.contains("Settings::from_lookup") {
        let definitions: String =
            config_rs.lines().filter(|line| !line.trim().starts_with("pub const ")).collect::<Vec<_>>().join("\n");
        let rules = tokens(&definitions);
        read.extend(constants.keys().copied().filter(|name| rules.contains(name)));
    }
    read.iter().map(|name| constants[name].to_owned()).collect()
}

/// The variables only one function reads: the `config` constants its own `main.rs` names.
fn own_variables(binary: &str) -> BTreeSet<String> {
    let read =
        |path: PathBuf| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config_rs = read(workspace_root().join("shared/src/config/mod.rs"));
    let main_rs = read(workspace_root().join("functions").join(binary).join("src/main.rs"));
    let main = tokens(&main_rs);
    config_constants(&config_rs)
        .into_iter()
        .filter(|(name, _)| main.contains(name))
        .map(|(_, value)| value.to_owned())
        .collect()
}

/// `config/mod.rs`'s variable names: each constant's name and the variable it names.
fn config_constants(config_rs: &str) -> BTreeMap<&str, &str> {
    config_rs
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_prefix("pub const ")?.split_once(": &str = ")?;
            Some((name, value.trim_end_matches(';').trim_matches('"')))
        })
        .collect()
}

/// Read by the functions, but left unset on AWS on purpose: the Graph API's address defaults to
/// Meta's, and only the local stack points it at the sandbox.
const UNSET_ON_AWS: &[&str] = &[config::GRAPH_API_BASE_URL];

/// The SSM parameters each function needs: the webhook checks signatures and the handshake, the
/// two that send need the token, the forwarder signs with its own secret.
fn secret_params(binary: &str) -> &'static [&'static str] {
    match binary {
        "webhook-intake" => &[config::WHATSAPP_APP_SECRET_PARAM, config::WHATSAPP_VERIFY_TOKEN_PARAM],
        "send-dispatch" | "retry-executor" => &[config::WHATSAPP_ACCESS_TOKEN_PARAM],
        "webhook-forward" => &[config::FORWARD_SECRET_PARAM],
        other => panic!("no secrets known for {other}"),
    }
}

fn variable_names(variables: &Value) -> BTreeSet<String> {
    variables
        .as_mapping()
        .map(|map| map.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn every_variable_the_functions_read_is_set_for_each_function() {
    let read = variables_read();
    for known in [config::TABLE_NAME, config::RETRY_DELAYS, config::SCHEDULER_DLQ_ARN, config::GRAPH_API_VERSION] {
        assert!(read.contains(known), "{known} is read, yet missing from {read:?}");
    }
    let all_secret_params = [
        config::WHATSAPP_APP_SECRET_PARAM,
        config::WHATSAPP_ACCESS_TOKEN_PARAM,
        config::WHATSAPP_VERIFY_TOKEN_PARAM,
        config::FORWARD_SECRET_PARAM,
    ];
    let template = template();
    let global = variable_names(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let unread: Vec<&String> = global.difference(&read).collect();
    assert!(unread.is_empty(), "Globals set {unread:?}, which the shared settings do not read");
    for (binary, function) in functions(&template) {
        let own = variable_names(&function["Properties"]["Environment"]["Variables"]);
        let mut set = global.clone();
        set.extend(own.iter().cloned());
        // webhook-forward reads its own variables alone; the others the shared settings too.
        let mut read = if binary == "webhook-forward" { BTreeSet::new() } else { read.clone() };
        read.extend(own_variables(&binary));
        let needed: BTreeSet<String> = read
            .iter()
            .filter(|name| !UNSET_ON_AWS.contains(&name.as_str()) && !all_secret_params.contains(&name.as_str()))
            .cloned()
            .chain(secret_params(&binary).iter().map(|name| (*name).to_owned()))
            .collect();
        let missing: Vec<&String> = needed.difference(&set).collect();
        assert!(missing.is_empty(), "{binary} lacks {missing:?}");
        let unknown: Vec<&String> = own.difference(&read).collect();
        assert!(unknown.is_empty(), "{binary} sets {unknown:?}, which it does not read");
        for plain in [config::WHATSAPP_APP_SECRET, config::WHATSAPP_ACCESS_TOKEN, config::WHATSAPP_VERIFY_TOKEN] {
            assert!(!set.contains(plain), "{binary} must read {plain} from SSM, not the environment");
        }
    }
}

/// A CloudFormation value (a plain string or a short tag) as the template writes it.
fn written(value: &Value) -> String {
    serde_yaml::to_string(value).expect("a YAML value").trim().to_owned()
}

/// The retry executor is invoked asynchronously by EventBridge Scheduler, whose retries and
/// dead-letter queue cover only the Invoke call: a failed invocation must be kept (and alarmed
/// on), and the sweep that finds what it left must run on a schedule of its own.
#[test]
fn a_failed_retry_executor_invocation_is_kept_and_a_recurring_sweep_backs_the_timers() {
    let template = template();
    let executor = resource(&template, "RetryExecutorFunction");
    let on_failure = &executor["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
    assert_eq!(text(&on_failure["Type"], "OnFailure.Type"), "SQS");
    assert_eq!(written(&on_failure["Destination"]), "!GetAtt RetryFailureQueue.Arn");
    let failures = resource(&template, "RetryFailureAlarm");
    assert!(written(&failures["Properties"]["Dimensions"]).contains("RetryFailureQueue.QueueName"));

    let sweep = &executor["Properties"]["Events"]["Sweep"];
    assert_eq!(text(&sweep["Type"], "Sweep.Type"), "ScheduleV2");
    assert!(written(&sweep["Properties"]["ScheduleExpression"]).contains("rate(${SweepIntervalMinutes} minutes)"));
    let input: serde_json::Value =
        serde_json::from_str(text(&sweep["Properties"]["Input"], "Sweep.Input")).expect("the sweep's input is JSON");
    assert!(input.get("sweep").is_some(), "the retry executor reads {{\"sweep\": …}} as a sweep: {input}");
    let lost = resource(&template, "LostPromptsAlarm");
    assert_eq!(text(&lost["Properties"]["MetricName"], "MetricName"), "prompts_lost");
}

fn seconds(value: &Value, what: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{what} is not a whole number of seconds: {value:?}"))
}

/// Every timeout, visibility timeout and batch size is the one `shared::budget` derives.
#[test]
fn the_timeouts_follow_the_budget() {
    use shared::budget;
    let template = template();
    let timeout = |name: &str| seconds(&resource(&template, name)["Properties"]["Timeout"], name);
    assert_eq!(timeout("WebhookIntakeFunction"), budget::INTAKE_TIMEOUT.as_secs());
    assert_eq!(timeout("SendDispatchFunction"), budget::DISPATCH_TIMEOUT.as_secs());
    assert_eq!(timeout("RetryExecutorFunction"), budget::RETRY_TIMEOUT.as_secs());
    assert!(budget::INTAKE_TIMEOUT <= budget::HTTP_API_LIMIT, "the intake answers through the HTTP API");
    let queue = &resource(&template, "SendQueue")["Properties"];
    assert_eq!(seconds(&queue["VisibilityTimeout"], "VisibilityTimeout"), budget::QUEUE_VISIBILITY.as_secs());
    let source = &resource(&template, "SendDispatchFunction")["Properties"]["Events"]["Campaigns"]["Properties"];
    assert_eq!(seconds(&source["BatchSize"], "BatchSize"), u64::from(budget::QUEUE_BATCH_SIZE));
    let concurrency = &source["ScalingConfig"]["MaximumConcurrency"];
    assert_eq!(seconds(concurrency, "MaximumConcurrency"), u64::from(budget::QUEUE_MAX_CONCURRENCY));
}

/// Coexistence: with ForwardUrl, webhook-intake queues every verified body on ForwardQueue, whose
/// messages fit the largest body forwarded, come back six function timeouts after a failed post,
/// and end in a watched dead-letter queue; webhook-forward reports each failed body on its own. The
/// outcome events go to EventBusName, watched for failures too.
#[test]
fn forwarded_bodies_are_queued_retried_and_dead_lettered_and_outcome_events_are_watched() {
    let template = template();
    let queue = &resource(&template, "ForwardQueue")["Properties"];
    let forwarder = resource(&template, "WebhookForwardFunction");
    let timeout = seconds(&forwarder["Properties"]["Timeout"], "Timeout");
    assert_eq!(seconds(&queue["VisibilityTimeout"], "VisibilityTimeout"), 6 * timeout);
    assert_eq!(seconds(&queue["MaximumMessageSize"], "MaximumMessageSize"), shared::forward::MAX_FORWARDED_BODY as u64);
    assert_eq!(written(&queue["RedrivePolicy"]["deadLetterTargetArn"]), "!GetAtt ForwardDeadLetterQueue.Arn");
    let source = &forwarder["Properties"]["Events"]["Bodies"];
    assert_eq!(written(&source["Properties"]["Queue"]), "!GetAtt ForwardQueue.Arn");
    assert_eq!(written(&source["Properties"]["FunctionResponseTypes"]), "- ReportBatchItemFailures");
    assert!(timeout > shared::forward::http::POST_TIMEOUT.as_secs(), "one post fits in an invocation");

    let intake = resource(&template, "WebhookIntakeFunction");
    let forward_to = written(&intake["Properties"]["Environment"]["Variables"][config::FORWARD_QUEUE_ARN]);
    assert!(forward_to.contains("ForwardQueue.Arn") && forward_to.contains("ForwardQueueArn"), "{forward_to}");
    let dead = resource(&template, "ForwardDeadLetterAlarm");
    assert!(written(&dead["Properties"]["Dimensions"]).contains("ForwardDeadLetterQueue.QueueName"));
    for (alarm, metric) in
        [("OutcomeEventsFailedAlarm", "outcome_events_failed"), ("ForwardRefusedAlarm", "forwards_refused")]
    {
        assert_eq!(text(&resource(&template, alarm)["Properties"]["MetricName"], "MetricName"), metric);
    }
    let bus = written(&template["Globals"]["Function"]["Environment"]["Variables"][config::EVENT_BUS_NAME]);
    assert_eq!(bus, "!Ref EventBusName");
}
