//! The pod every workload and the migration Job run: the pipeline's image,
//! a `tributary` subcommand, settings from the ConfigMap, secrets by
//! reference, and a restrictive security context.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume, VolumeMount,
};

use crate::crd::{AnalyticsPipeline, WorkloadSpec};

/// The user and group the pods run as (not root).
const RUN_AS: i64 = 65532;

/// A pod of `container`, laid out per `workload` (node selector,
/// tolerations), non-root with a read-only root and a writable `/tmp`.
pub fn pod(container: Container, workload: Option<&WorkloadSpec>, restart_policy: &str) -> PodSpec {
    PodSpec {
        containers: vec![container],
        restart_policy: Some(restart_policy.to_owned()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // The root filesystem is read-only; scratch space is here.
        volumes: Some(vec![Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        node_selector: workload
            .filter(|w| !w.node_selector.is_empty())
            .map(|w| w.node_selector.clone()),
        tolerations: workload
            .filter(|w| !w.tolerations.is_empty())
            .map(|w| w.tolerations.clone()),
        automount_service_account_token: Some(false),
        // Settings come from the ConfigMap and the spec only: a Service of
        // the namespace named `auth` or `query` would otherwise link
        // `AUTH_PORT=tcp://...` into every pod and stop the workload.
        enable_service_links: Some(false),
        ..PodSpec::default()
    }
}

/// The `tributary` container: image, subcommand, settings (the ConfigMap
/// named `config`) and secrets.
pub fn container(
    p: &AnalyticsPipeline,
    subcommand: &str,
    config: &str,
    env: Vec<EnvVar>,
) -> Container {
    Container {
        name: "tributary".to_owned(),
        image: Some(p.spec.image.clone()),
        args: Some(vec![subcommand.to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config.to_owned(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        // A container that fails leaves its last log lines (the error it
        // exits with) as its termination message: in `kubectl describe`,
        // and in the MigrationFailed condition for the migration Job.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}
