//! Compiles `proto/flagbelt/v1/*.proto` with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/flagbelt/v1/ruleset.proto",
        "proto/flagbelt/v1/manifest.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    prost_build::Config::new()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .field_attribute(
            "flagbelt.v1.SignedManifest.body",
            "#[serde(serialize_with = \"crate::ruleset::proto::hex_bytes\")]",
        )
        .field_attribute(
            "flagbelt.v1.Signature.signature",
            "#[serde(serialize_with = \"crate::ruleset::proto::hex_bytes\")]",
        )
        .field_attribute(
            "flagbelt.v1.ManifestBody.ruleset_sha256",
            "#[serde(serialize_with = \"crate::ruleset::proto::hex_bytes\")]",
        )
        .field_attribute(
            "flagbelt.v1.ApiKey.kind",
            "#[serde(serialize_with = \"crate::ruleset::proto::key_kind_name\")]",
        )
        .field_attribute(
            "flagbelt.v1.AttributeTest.op",
            "#[serde(serialize_with = \"crate::ruleset::proto::operator_name\")]",
        )
        .compile_fds(fds)?;
    Ok(())
}
