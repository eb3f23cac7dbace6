//! `template.yaml`, read as the tests read it: parsed YAML in which CloudFormation's short tags
//! (`!Ref`, `!Sub`, `!GetAtt`) stay tagged values, and its functions by the binary each runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// The template, parsed.
pub fn template() -> Value {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("template.yaml is YAML, CloudFormation tags included")
}

/// Each `AWS::Serverless::Function` by the binary it runs, with its resource.
pub fn functions(template: &Value) -> BTreeMap<String, &Value> {
    let resources = template["Resources"].as_mapping().expect("Resources is a mapping");
    resources
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, resource)| {
            let name = name.as_str().unwrap_or_default();
            let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str();
            let binary = binary.unwrap_or_else(|| panic!("{name}'s Binary is not a plain string"));
            (binary.to_owned(), resource)
        })
        .collect()
}
