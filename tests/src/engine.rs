//! The Docker engine and test images the Docker tests use, from the environment that
//! `scripts/with-docker.sh` (run by `make test`) sets. Without them the tests fail, saying how
//! to get them; they never skip.

/// The engine's socket (`DOCKER_HOST`).
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "DOCKER_HOST is not set: run the tests through `make test` or \
             `scripts/with-docker.sh cargo test`, which start a Docker engine and build the \
             test images"
        )
    })
}

/// A test image reference from the environment (`GPUFLOW_TEST_IMAGE_DEBIAN`, `…_BUSYBOX`).
pub fn test_image(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `eval \"$(scripts/build-test-images.sh)\"` or `make test`")
    })
}
