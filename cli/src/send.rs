//! `capguard send`: a campaign from a CSV file of contacts, to a running `capguard serve`, or to a
//! deployed stack (its HTTP API, signed with SigV4, or its send queue).
//!
//! The file is read and checked whole before anything is sent: each row's number is normalised
//! to E.164 (as the API does it), each template parameter column filled, and the rows that cannot
//! be sent are reported by line. The rest go out in requests of at most [`SYNC_RECIPIENTS`],
//! which serve answers recipient by recipient. Every request carries the same idempotency key,
//! derived from the campaign, so that each row's send is named by the campaign and its number:
//! running the same file again sends nothing twice, and finishes what an interrupted run left.
//!
//! Columns: the number (`phone` unless `--number-column` says otherwise); `body.1`, `body.2`, …
//! for the body's positional parameters and `body.NAME` for a named one; `header.1` or
//! `header.NAME` likewise; `button.N.url` (a URL button's suffix) and `button.N.quick_reply` (a
//! quick-reply button's payload) for the button at index N; `opt_in_source`, `opt_in_at` and
//! `opt_in_note` for the row's opt-in, recorded in the recipient's consent history (with
//! `REQUIRE_OPT_IN`, marketing needs one). Other columns are not sent, and said so.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;
use shared::aws::AwsTarget;
use shared::budget::SYNC_RECIPIENTS;
use shared::domain::consent::OptIn;
use shared::domain::rules::{Category, e164_digits, region_of};
use shared::privacy::mask_number;
use shared::queue::sqs::SqsQueue;
use shared::queue::{SendQueue as _, chunks};
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName};
use shared::whatsapp::send::{Component, Parameter};

/// Sends a campaign from a CSV file of contacts through a running `capguard serve`, or a deployed
/// stack's HTTP API or send queue.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The contacts: a header row, then one row per recipient.
    #[arg(long = "csv", value_name = "FILE")]
    file: PathBuf,
    #[arg(long)]
    template: String,
    /// The template's language code, e.g. en_US.
    #[arg(long)]
    language: String,
    /// The campaign's name: the report's, and the root of every row's idempotency key.
    #[arg(long)]
    campaign: String,
    #[arg(long, default_value = "marketing")]
    category: Category,
    /// The WhatsApp business number's phone number id.
    #[arg(long)]
    phone_number_id: String,
    /// The column that holds each recipient's number.
    #[arg(long, default_value = "phone")]
    number_column: String,
    /// The country (ISO 3166, e.g. GB) of numbers written without + and a country code.
    #[arg(long)]
    default_country: Option<String>,
    /// No ladder retry after this time (RFC 3339): a flash sale's end.
    #[arg(long)]
    retry_until: Option<DateTime<Utc>>,
    /// The `capguard serve` to send through.
    #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with_all = ["queue", "api"])]
    serve: String,
    /// Send through a deployed stack's HTTP API instead (its SendsUrl output), each request
    /// signed with SigV4 with the standard AWS credential chain (`--profile`, the environment, …).
    #[arg(long, value_name = "SENDS_URL", conflicts_with = "queue")]
    api: Option<String>,
    /// Put the campaign on a deployed stack's send queue instead (its SendQueueUrl output), in
    /// chunks the send-dispatch function takes one at a time.
    #[arg(long, value_name = "SQS_URL")]
    queue: Option<String>,
    /// The SQS endpoint with --queue, e.g. an emulator's; AWS's own when not given.
    #[arg(long, env = "AWS_ENDPOINT_URL_SQS")]
    sqs_endpoint: Option<String>,
    /// The stack's AWS region, with --api or --queue (the SDK's usual variables and files
    /// otherwise).
    #[arg(long)]
    region: Option<String>,
    /// The profile of the AWS config and credentials files to sign in with, with --api or --queue.
    #[arg(long)]
    profile: Option<String>,
    /// Recipients per request (serve answers up to 100 one by one).
    #[arg(long, default_value_t = SYNC_RECIPIENTS, value_parser = chunk_size)]
    chunk: usize,
    /// Check the file and say what the campaign would send and cost, sending nothing.
    #[arg(long)]
    dry_run: bool,
}

fn chunk_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=SYNC_RECIPIENTS).contains(&n) => Ok(n),
        _ => Err(format!("a count from 1 to {SYNC_RECIPIENTS}")),
    }
}

/// The recipients a contacts file gives, and what is wrong with the rows that give none.
#[derive(Debug, Default)]
pub struct Contacts {
    pub recipients: Vec<Contact>,
    /// By line: why the row cannot be sent.
    pub problems: Vec<(u64, String)>,
    /// Rows whose number an earlier row has: (line, the earlier line). Sent once.
    pub repeated: Vec<(u64, u64)>,
    /// Columns that are neither the number nor a template parameter.
    pub ignored: Vec<String>,
}

/// One recipient of the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub line: u64,
    /// E.164 digits.
    pub number: String,
    pub components: Vec<Component>,
    /// The row's opt-in, from its `opt_in_*` columns.
    pub opt_in: Option<OptIn>,
}

/// The columns that carry each row's opt-in: `opt_in_source` (a row without one has none),
/// `opt_in_at` (RFC 3339; when it is recorded, if empty) and `opt_in_note`.
const OPT_IN_COLUMNS: [&str; 3] = ["opt_in_source", "opt_in_at", "opt_in_note"];

/// Where the opt-in columns are.
#[derive(Debug, Clone, Copy)]
struct OptInColumns {
    source: usize,
    at: Option<usize>,
    note: Option<usize>,
}

impl OptInColumns {
    fn find(headers: &csv::StringRecord) -> anyhow::Result<Option<Self>> {
        let [source, at, note] = OPT_IN_COLUMNS.map(|name| headers.iter().position(|h| h == name));
        match source {
            Some(source) => Ok(Some(Self { source, at, note })),
            None if at.is_some() || note.is_some() => bail!("opt_in_at and opt_in_note need an opt_in_source column"),
            None => Ok(None),
        }
    }

    /// The row's opt-in, or why it cannot be taken.
    fn read(self, record: &csv::StringRecord, now: DateTime<Utc>) -> Result<Option<OptIn>, Vec<String>> {
        let cell = |at: Option<usize>| at.and_then(|at| record.get(at)).filter(|value| !value.is_empty());
        let Some(source) = cell(Some(self.source)) else {
            if cell(self.at).is_some() || cell(self.note).is_some() {
                return Err(vec!["opt_in_at or opt_in_note without an opt_in_source".into()]);
            }
            return Ok(None);
        };
        let at = match cell(self.at).map(DateTime::parse_from_rfc3339).transpose() {
            Ok(at) => at.map(|at| at.with_timezone(&Utc)),
            Err(_) => return Err(vec!["opt_in_at is not an RFC 3339 time (2026-03-01T09:30:00Z)".into()]),
        };
        let opt_in = OptIn { source: source.to_owned(), at, note: cell(self.note).map(str::to_owned) };
        let problems = opt_in.problems(now);
        if problems.is_empty() { Ok(Some(opt_in)) } else { Err(problems) }
    }
}

/// Where a column's value goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// `body` or `header`, by position (from 1) or by name.
    Text { component: String, position: Option<u32>, name: String },
    /// A button's parameter: its index and sub-type (`url`, `quick_reply`).
    Button { index: u8, sub_type: String },
}

impl Slot {
    fn of(column: &str) -> Option<Self> {
        let mut parts = column.trim().splitn(3, '.');
        match (parts.next()?, parts.next(), parts.next()) {
            (component @ ("body" | "header"), Some(key), None) if !key.is_empty() => Some(Self::Text {
                component: component.to_owned(),
                position: key.parse().ok().filter(|p| *p >= 1),
                name: key.to_owned(),
            }),
            ("button", Some(index), Some(sub_type @ ("url" | "quick_reply"))) => {
                Some(Self::Button { index: index.parse().ok()?, sub_type: sub_type.to_owned() })
            }
            _ => None,
        }
    }
}

/// Reads and checks a contacts file: every row is a recipient or a problem, by its line (the
/// header is line 1).
pub fn read_contacts(file: impl Read, number_column: &str, default_country: Option<&str>) -> anyhow::Result<Contacts> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let headers = reader.headers().context("reading the header row")?.clone();
    let number_at = headers.iter().position(|h| h == number_column).with_context(|| {
        format!("no {number_column:?} column (the header has: {})", headers.iter().collect::<Vec<_>>().join(", "))
    })?;
    let opt_in_columns = OptInColumns::find(&headers)?;
    let mut slots: Vec<(usize, Slot)> = Vec::new();
    let mut contacts = Contacts::default();
    for (at, header) in headers.iter().enumerate() {
        match Slot::of(header) {
            Some(slot) => slots.push((at, slot)),
            None if at != number_at && !OPT_IN_COLUMNS.contains(&header) => contacts.ignored.push(header.to_owned()),
            None => {}
        }
    }
    // By component: named parameters (which have no position), then positional ones in order;
    // buttons by index.
    slots.sort_by(|a, b| a.1.cmp(&b.1));
    for component in ["body", "header"] {
        let positions: Vec<u32> = slots
            .iter()
            .filter_map(|(_, slot)| match slot {
                Slot::Text { component: c, position, .. } if c == component => *position,
                _ => None,
            })
            .collect();
        if positions.iter().zip(1..).any(|(position, expected)| *position != expected) {
            bail!("the {component} parameter columns must be numbered from {component}.1 without a gap");
        }
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.context("reading the file")?;
        let line = record.position().map_or(0, csv::Position::line);
        let written = record.get(number_at).unwrap_or_default();
        let number = match e164_digits(written, default_country) {
            Ok(number) => number,
            Err(problem) => {
                contacts.problems.push((line, format!("{number_column} {:?} {problem}", mask_number(written))));
                continue;
            }
        };
        let empty: Vec<String> = slots
            .iter()
            .filter(|(at, _)| record.get(*at).is_none_or(str::is_empty))
            .map(|(at, _)| headers[*at].to_owned())
            .collect();
        if !empty.is_empty() {
            contacts.problems.push((line, format!("empty: {}", empty.join(", "))));
            continue;
        }
        let opt_in = match opt_in_columns.map(|columns| columns.read(&record, Utc::now())).transpose() {
            Ok(opt_in) => opt_in.flatten(),
            Err(problems) => {
                contacts.problems.push((line, problems.join("; ")));
                continue;
            }
        };
        if let Some(first) = seen.get(&number) {
            contacts.repeated.push((line, *first));
            continue;
        }
        seen.insert(number.clone(), line);
        let components = components(&slots, &record);
        contacts.recipients.push(Contact { line, number, components, opt_in });
    }
    Ok(contacts)
}

/// A row's template components, from its parameter columns.
fn components(slots: &[(usize, Slot)], record: &csv::StringRecord) -> Vec<Component> {
    let mut components: Vec<Component> = Vec::new();
    for (at, slot) in slots {
        let value = record.get(*at).unwrap_or_default().to_owned();
        let (kind, sub_type, index, parameter) = match slot {
            Slot::Text { component, position: Some(_), .. } => (component.clone(), None, None, Parameter::text(value)),
            Slot::Text { component, position: None, name } => {
                (component.clone(), None, None, Parameter::named_text(name.clone(), value))
            }
            Slot::Button { index, sub_type } => {
                let parameter = match sub_type.as_str() {
                    "quick_reply" => Parameter::payload(value),
                    _ => Parameter::text(value),
                };
                ("button".to_owned(), Some(sub_type.clone()), Some(index.to_string()), parameter)
            }
        };
        match components.iter_mut().find(|c| c.kind == kind && c.index == index) {
            Some(component) => component.parameters.push(parameter),
            None => components.push(Component {
                kind,
                sub_type,
                index,
                parameters: vec![parameter],
                extra: Default::default(),
            }),
        }
    }
    components
}

/// The key every request of `campaign` carries: with the number, it names each row's send (so a
/// campaign sent again with another template or other parameters sends nothing: a new message
/// is a new campaign).
pub fn idempotency_key(campaign: &str) -> String {
    format!("csv:{campaign}")
}

/// What the table and the throughput turns cost on AWS per million sends, from the measured
/// units (docs/data-model.md, "Per million sends").
const AWS_DOLLARS_PER_MILLION_SENDS: f64 = 9.2 + 0.78;

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let contacts = read_contacts(file, &args.number_column, args.default_country.as_deref())?;
    let total = contacts.recipients.len() + contacts.problems.len() + contacts.repeated.len();
    println!("{}: {total} rows, {} to send", args.file.display(), contacts.recipients.len());
    for (line, problem) in &contacts.problems {
        println!("  line {line}: not sent: {problem}");
    }
    for (line, first) in &contacts.repeated {
        println!("  line {line}: the same number as line {first}: sent once");
    }
    if !contacts.ignored.is_empty() {
        println!("  columns not sent (not the number or a template parameter): {}", contacts.ignored.join(", "));
    }
    if args.dry_run {
        dry_run(&args, &contacts);
        return Ok(());
    }
    if contacts.recipients.is_empty() {
        bail!("no row can be sent");
    }
    if let Some(url) = &args.queue {
        return queue(&args, url, &contacts.recipients).await;
    }
    let client = reqwest::Client::new();
    let destination = match &args.api {
        Some(url) => {
            let target = AwsTarget { endpoint: None, region: args.region.clone(), profile: args.profile.clone() };
            Destination::Api { url: url.clone(), aws: Box::new(shared::aws::load(&target).await) }
        }
        None => Destination::Serve(format!("{}/sends", args.serve.trim_end_matches('/'))),
    };
    let progress = Progress::new(contacts.recipients.len());
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for chunk in contacts.recipients.chunks(args.chunk) {
        let request = request(&args, chunk);
        let answer = post(&client, &destination, &request).await.with_context(|| {
            format!(
                "{} rows sent so far; run the same command again to send the rest (nothing is sent twice)",
                progress.done()
            )
        })?;
        for result in answer["results"].as_array().into_iter().flatten() {
            *outcomes.entry(result["outcome"].as_str().unwrap_or("unknown").to_owned()).or_default() += 1;
        }
        progress.advance(chunk.len(), &outcomes);
    }
    progress.finish(&outcomes);
    match destination {
        Destination::Serve(_) => {
            let path = ["campaigns", args.campaign.as_str(), "report"];
            print!("{}", crate::operator::served(&args.serve, &path, &[("format", "text")]).await?);
        }
        Destination::Api { .. } => println!(
            "the stack sends and retries them; `capguard report --campaign {} --dynamodb TABLE` shows the funnel",
            args.campaign
        ),
    }
    Ok(())
}

/// Where `POST /sends` requests go.
enum Destination {
    /// A `capguard serve`'s route.
    Serve(String),
    /// A deployed stack's HTTP API, which takes requests signed with SigV4.
    Api { url: String, aws: Box<aws_config::SdkConfig> },
}

/// The campaign on the send queue, in the chunks the send-dispatch function takes.
async fn queue(args: &SendArgs, url: &str, recipients: &[Contact]) -> anyhow::Result<()> {
    let target =
        AwsTarget { endpoint: args.sqs_endpoint.clone(), region: args.region.clone(), profile: args.profile.clone() };
    let chunks = chunks(&request(args, recipients));
    SqsQueue::connect_to(url.to_owned(), &target)
        .await
        .enqueue(&chunks)
        .await
        .with_context(|| format!("queueing on {url}: run the same command again (nothing is sent twice)"))?;
    println!(
        "queued {} recipients in {} chunks; the send-dispatch function sends them, and `capguard report --campaign {} --dynamodb TABLE` shows the funnel",
        recipients.len(),
        chunks.len(),
        args.campaign
    );
    Ok(())
}

fn request(args: &SendArgs, chunk: &[Contact]) -> DispatchRequest {
    DispatchRequest {
        phone_number_id: args.phone_number_id.clone(),
        template: TemplateName { name: args.template.clone(), language: args.language.clone() },
        category: args.category,
        campaign: Some(args.campaign.clone()),
        idempotency_key: idempotency_key(&args.campaign),
        retry_until: args.retry_until,
        utc_offset: None,
        default_country: None,
        recipients: chunk
            .iter()
            .map(|c| RecipientSpec {
                to: format!("+{}", c.number),
                components: c.components.clone(),
                opt_in: c.opt_in.clone(),
            })
            .collect(),
    }
}

/// Posts one request to `POST /sends`; its answer.
async fn post(client: &reqwest::Client, destination: &Destination, request: &DispatchRequest) -> anyhow::Result<Value> {
    let body = serde_json::to_vec(request)?;
    let (url, builder) = match destination {
        Destination::Serve(url) => (url, client.post(url)),
        Destination::Api { url, aws } => (url, signed(client.post(url), url, &body, aws).await?),
    };
    let response = builder
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        // capguard's own routes say why under "error", API Gateway under "message".
        let reason = body["error"].as_str().or(body["message"].as_str()).unwrap_or("no reason given");
        bail!("{url} answered {status}: {reason}");
    }
    Ok(body)
}

/// `builder` with the SigV4 headers that sign a `POST` of `body` to `url` for API Gateway
/// (`execute-api`), with the credentials and region of `aws`.
async fn signed(
    builder: reqwest::RequestBuilder,
    url: &str,
    body: &[u8],
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<reqwest::RequestBuilder> {
    use aws_credential_types::provider::ProvideCredentials as _;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let provider = aws.credentials_provider().context("no AWS credentials provider is configured")?;
    let credentials =
        provider.provide_credentials().await.context("no AWS credentials (--profile, or the environment)")?;
    let region = aws.region().context("no AWS region: give --region")?.to_string();
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", "application/json")];
    let signable = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut builder = builder;
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    Ok(builder)
}

fn dry_run(args: &SendArgs, contacts: &Contacts) {
    let mut countries: BTreeMap<String, u64> = BTreeMap::new();
    for contact in &contacts.recipients {
        *countries.entry(region_of(&contact.number).unwrap_or_else(|| "?".into())).or_default() += 1;
    }
    let by_country: Vec<String> = countries.iter().map(|(country, n)| format!("{country} {n}")).collect();
    let sends = contacts.recipients.len();
    println!(
        "dry run: {sends} {} messages of template {} ({}) for campaign {}, in {} requests; by country: {}",
        args.category.as_str(),
        args.template,
        args.language,
        args.campaign,
        sends.div_ceil(args.chunk),
        by_country.join(", ")
    );
    println!(
        "  AWS: about ${:.4} (${AWS_DOLLARS_PER_MILLION_SENDS:.2} a million sends: the table and the throughput turns, retries included); Meta bills each delivered message at its rate for the recipient's country",
        sends as f64 * AWS_DOLLARS_PER_MILLION_SENDS / 1e6
    );
}

/// How far the sending is: a bar on a terminal, a line per request otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: std::cell::Cell<usize>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| indicatif::ProgressBar::new(total as u64));
        Self { bar, total, done: std::cell::Cell::new(0) }
    }

    fn done(&self) -> usize {
        self.done.get()
    }

    fn advance(&self, rows: usize, outcomes: &BTreeMap<String, u64>) {
        self.done.set(self.done.get() + rows);
        match &self.bar {
            Some(bar) => bar.set_position(self.done.get() as u64),
            None => println!("  sent {} of {}: {}", self.done.get(), self.total, tally(outcomes)),
        }
    }

    fn finish(&self, outcomes: &BTreeMap<String, u64>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("sent {} rows: {}", self.done.get(), tally(outcomes));
    }
}

fn tally(outcomes: &BTreeMap<String, u64>) -> String {
    outcomes.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "phone,name,body.1,body.2,button.0.quick_reply,notes\n\
        +91 98123 45678,Asha,Asha,20%,stop-promo,vip\n\
        098123 45679,Ravi,Ravi,10%,stop-promo,\n\
        12345,Bad,Bad,5%,stop-promo,\n\
        +91-98123-45678,Asha again,Asha,20%,stop-promo,\n\
        +919812345670,Empty,,5%,stop-promo,\n";

    #[test]
    fn each_row_is_a_recipient_with_its_own_parameters_or_a_problem_by_line() {
        let contacts = read_contacts(FILE.as_bytes(), "phone", Some("IN")).unwrap();
        let numbers: Vec<(&str, u64)> = contacts.recipients.iter().map(|c| (c.number.as_str(), c.line)).collect();
        assert_eq!(numbers, [("919812345678", 2), ("919812345679", 3)]);
        let body = &contacts.recipients[1].components[0];
        assert_eq!(body.kind, "body");
        let texts: Vec<&str> = body.parameters.iter().filter_map(|p| p.text.as_deref()).collect();
        assert_eq!(texts, ["Ravi", "10%"]);
        let button = &contacts.recipients[1].components[1];
        assert_eq!((button.sub_type.as_deref(), button.index.as_deref()), (Some("quick_reply"), Some("0")));
        assert_eq!(button.parameters[0].payload.as_deref(), Some("stop-promo"));
        assert_eq!(contacts.repeated, [(5, 2)]);
        let lines: Vec<u64> = contacts.problems.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [4, 6]);
        assert!(
            contacts.problems[0].1.starts_with("phone ") && !contacts.problems[0].1.contains("12345"),
            "{:?}",
            contacts.problems
        );
        assert_eq!(contacts.problems[1].1, "empty: body.1");
        assert_eq!(contacts.ignored, ["name", "notes"]);
    }

    #[test]
    fn a_rows_opt_in_comes_from_its_opt_in_columns_and_a_bad_one_is_reported_by_line() {
        let file = "phone,opt_in_source,opt_in_at,opt_in_note\n\
                    +919812345678,website_form,2026-03-01T09:30:00Z,\"form v2, box ticked\"\n\
                    +919812345679,,,\n\
                    +919812345680,qr_code,,\n\
                    +919812345681,Web Form,,\n\
                    +919812345682,checkout,yesterday,\n\
                    +919812345683,,,a note but no source\n";
        let contacts = read_contacts(file.as_bytes(), "phone", None).unwrap();
        assert!(contacts.ignored.is_empty(), "{:?}", contacts.ignored);
        let opt_ins: Vec<_> = contacts.recipients.iter().map(|c| (c.line, c.opt_in.clone())).collect();
        let at = DateTime::parse_from_rfc3339("2026-03-01T09:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            opt_ins,
            [
                (
                    2,
                    Some(OptIn {
                        source: "website_form".into(),
                        at: Some(at),
                        note: Some("form v2, box ticked".into())
                    })
                ),
                (3, None),
                (4, Some(OptIn { source: "qr_code".into(), at: None, note: None })),
            ]
        );
        let problems: Vec<_> =
            contacts.problems.iter().map(|(line, p)| (*line, p.split(' ').next().unwrap())).collect();
        assert_eq!(problems, [(5, "opt_in.source"), (6, "opt_in_at"), (7, "opt_in_at")], "{:?}", contacts.problems);
        let err = read_contacts("phone,opt_in_at\n+919812345678,\n".as_bytes(), "phone", None).unwrap_err();
        assert_eq!(err.to_string(), "opt_in_at and opt_in_note need an opt_in_source column");
    }

    #[test]
    fn a_file_without_the_number_column_is_refused_naming_its_columns() {
        let err = read_contacts("mobile,body.1\n+919812345678,Asha\n".as_bytes(), "phone", None).unwrap_err();
        assert_eq!(err.to_string(), "no \"phone\" column (the header has: mobile, body.1)");
    }

    #[test]
    fn positional_columns_must_run_from_one_without_a_gap() {
        let err = read_contacts("phone,body.1,body.3\n+919812345678,a,b\n".as_bytes(), "phone", None).unwrap_err();
        assert_eq!(err.to_string(), "the body parameter columns must be numbered from body.1 without a gap");
    }

    #[test]
    fn named_parameters_keep_their_names() {
        let contacts = read_contacts("phone,body.first_name\n+919812345678,Asha\n".as_bytes(), "phone", None).unwrap();
        let parameter = &contacts.recipients[0].components[0].parameters[0];
        assert_eq!(
            (parameter.parameter_name.as_deref(), parameter.text.as_deref()),
            (Some("first_name"), Some("Asha"))
        );
    }
}
