//! Image references the way containerd reports them in container statuses.

use ring::digest::{digest, SHA256};

/// The fully qualified form containerd reports in `status.image`:
/// `nginx:1.27` becomes `docker.io/library/nginx:1.27`, `ghcr.io/a/b` becomes
/// `ghcr.io/a/b:latest`; a reference with a digest keeps it.
pub fn normalize_image(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    let has_registry =
        rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = match (has_registry, rest) {
        (true, _) => image.to_owned(),
        (false, Some(_)) => format!("docker.io/{image}"),
        (false, None) => format!("docker.io/library/{image}"),
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// A stable image ID for `image` (the same image always gets the same ID):
/// the repository without tag, `@sha256:`, and 64 hex digits.
pub fn image_id(image: &str) -> String {
    let full = normalize_image(image);
    let repo = match full.split_once('@') {
        Some((repo, _)) => repo.to_owned(),
        None => {
            let slash = full.rfind('/').map_or(0, |i| i + 1);
            match full[slash..].rfind(':') {
                Some(colon) => full[..slash + colon].to_owned(),
                None => full.clone(),
            }
        }
    };
    let hash = digest(&SHA256, full.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{repo}@sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_containerd() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalize_image("nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize_image("bitnami/redis:7"),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            normalize_image("ghcr.io/spiffe/spire-agent:1.12.0"),
            "ghcr.io/spiffe/spire-agent:1.12.0"
        );
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn image_id_drops_the_tag_and_is_stable() {
        let id = image_id("nginx:1.27");
        assert!(id.starts_with("docker.io/library/nginx@sha256:"), "{id}");
        assert_eq!(id.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert_eq!(id, image_id("docker.io/library/nginx:1.27"));
        assert!(image_id("localhost:5000/app").starts_with("localhost:5000/app@sha256:"));
    }
}
