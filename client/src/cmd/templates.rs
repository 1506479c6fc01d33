//! `gpuflow templates`: the built-in workload templates an offer may list.

use gpuflow_protocol::templates::TEMPLATES;

use crate::Failure;
use crate::output::table;

/// List the built-in templates (name, image, ports, SSH, what it runs).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Rent one with `gpuflow rent OFFER_ID --hours H --template NAME`; the \
offer must list it (`gpuflow offer OFFER_ID` shows its templates)."
)]
pub(crate) struct TemplatesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl TemplatesArgs {
    pub(crate) fn run(self) -> Result<(), Failure> {
        if self.json {
            let list: Vec<serde_json::Value> = TEMPLATES
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "description": t.description,
                        "image": t.image,
                        "ports": t.ports,
                        "command": t.command,
                        "ssh": t.ssh,
                    })
                })
                .collect();
            let text =
                serde_json::to_string_pretty(&list).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = TEMPLATES
            .iter()
            .map(|t| {
                vec![
                    t.name.to_owned(),
                    t.image.to_owned(),
                    t.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    if t.ssh { "yes" } else { "no" }.to_owned(),
                    t.description.to_owned(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["NAME", "IMAGE", "PORTS", "SSH", "DESCRIPTION"], &rows)
        );
        Ok(())
    }
}
