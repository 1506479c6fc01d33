use super::*;

fn config() -> DockerConfig {
    DockerConfig::new("12D3KooWHostPeer")
}

#[tokio::test]
async fn an_absent_engine_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/docker.sock", tmp.path().display());
    let err = DockerRuntime::connect(DockerConfig {
        socket: socket.clone(),
        ..config()
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach Docker at {socket}: ")),
        "{msg}"
    );
    assert!(
        msg.contains("; install Docker or use --runtime process"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_socket_nobody_answers_is_a_clear_error() {
    // A listening Unix socket that never speaks HTTP: the ping times out.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("docker.sock");
    let _listener = tokio::net::UnixListener::bind(&path).unwrap();
    let socket = format!("unix://{}", path.display());
    let err = DockerRuntime::connect(DockerConfig {
        socket: socket.clone(),
        connect_timeout: Duration::from_millis(200),
        ..config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, RuntimeError::DockerUnreachable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("use --runtime process"));
}

#[test]
fn docker_host_names_the_socket() {
    assert_eq!(socket_from_docker_host(None).unwrap(), DEFAULT_SOCKET);
    assert_eq!(socket_from_docker_host(Some(" ")).unwrap(), DEFAULT_SOCKET);
    assert_eq!(
        socket_from_docker_host(Some("unix:///run/d.sock")).unwrap(),
        "unix:///run/d.sock"
    );
    assert_eq!(
        socket_from_docker_host(Some("/run/d.sock")).unwrap(),
        "unix:///run/d.sock"
    );
    let err = socket_from_docker_host(Some("tcp://10.0.0.1:2375")).unwrap_err();
    assert!(
        err.to_string()
            .contains("DOCKER_HOST=tcp://10.0.0.1:2375 is not supported"),
        "{err}"
    );
}
