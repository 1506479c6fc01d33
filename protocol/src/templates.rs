//! Built-in workload templates: a name a host lists in its offer's `templates` and a renter
//! passes as `image_or_template` instead of spelling out an image, its ports and its command.
//!
//! Templates are part of the protocol, not of one node's config: the renter's CLI shows the same
//! list the host's quote desk builds lease specs from, and the spec the host signs (its hash is
//! the quote's `specHash`) spells out the image, ports and command, so the renter can check what
//! a name stands for before paying. Images are pinned to a tag, never `latest`, so a name means
//! the same thing on every host.
//!
//! Container port [`SSH_PORT`] is SSH: templates with `ssh = true` run `sshd` (the host's Docker
//! runtime installs the renter's key and starts it); the others publish only their app's port.

/// Container port of SSH.
pub const SSH_PORT: u16 = 22;

/// One built-in template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The name renters and offers use (`pytorch`).
    pub name: &'static str,
    /// One line for people.
    pub description: &'static str,
    /// Container image, pinned to a tag.
    pub image: &'static str,
    /// Container ports to publish: [`SSH_PORT`] first where `ssh` is set, then the app's port.
    pub ports: &'static [u16],
    /// The container's command under Docker (empty: keep the container alive for SSH).
    pub command: &'static [&'static str],
    /// Environment the template sets (the renter's `--env` may override it).
    pub env: &'static [(&'static str, &'static str)],
    /// Whether the renter connects over SSH (container port 22).
    pub ssh: bool,
}

/// The built-in list, in the order `gpuflow templates` shows it.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "pytorch",
        description: "PyTorch 2.5.1 with CUDA 12.4 and cuDNN 9; SSH in and run your code",
        image: "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        ports: &[SSH_PORT],
        command: &[],
        env: &[],
        ssh: true,
    },
    Template {
        name: "jupyter",
        description: "JupyterLab with PyTorch and CUDA 12 on port 8888 (set JUPYTER_TOKEN with --env)",
        image: "quay.io/jupyter/pytorch-notebook:cuda12-python-3.11",
        ports: &[8888],
        command: &[
            "start-notebook.py",
            "--ServerApp.ip=0.0.0.0",
            "--ServerApp.port=8888",
        ],
        env: &[],
        ssh: false,
    },
    Template {
        name: "vllm",
        description: "vLLM 0.6.4 OpenAI-compatible server on port 8000 (model from --env VLLM_MODEL=…)",
        image: "vllm/vllm-openai:v0.6.4",
        ports: &[8000],
        command: &[
            "sh",
            "-c",
            "exec python3 -m vllm.entrypoints.openai.api_server --host 0.0.0.0 --port 8000 \
             --model \"${VLLM_MODEL:-facebook/opt-125m}\"",
        ],
        env: &[],
        ssh: false,
    },
    Template {
        name: "ollama",
        description: "Ollama 0.5.4 API on port 11434",
        image: "ollama/ollama:0.5.4",
        ports: &[11434],
        command: &["ollama", "serve"],
        env: &[("OLLAMA_HOST", "0.0.0.0:11434")],
        ssh: false,
    },
];

/// The built-in template called `name`, if any.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_images_pinned_and_ssh_templates_publish_port_22() {
        for (i, t) in TEMPLATES.iter().enumerate() {
            assert!(
                TEMPLATES[..i].iter().all(|o| o.name != t.name),
                "{} twice",
                t.name
            );
            let tag = t.image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|tag| !tag.is_empty() && tag != "latest" && !tag.contains('/')),
                "{} is not pinned",
                t.image
            );
            assert_eq!(t.ssh, t.ports.contains(&SSH_PORT), "{}", t.name);
            assert!(!t.ports.is_empty(), "{} publishes nothing", t.name);
            assert_eq!(find(t.name), Some(t));
        }
        assert_eq!(find("ubuntu"), None);
    }
}
