//! Writing children: server-side apply with the operator's one field
//! manager, and deleting the children a pipeline no longer wants.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::meta::MANAGER;

/// A namespaced object kind the operator writes.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Server-side applies `object` in `namespace` as [`MANAGER`], taking over
/// fields another manager set (the operator owns what it builds). Returns
/// the object as the API server holds it, status included.
pub async fn apply<K: Child>(client: &Client, namespace: &str, object: &K) -> kube::Result<K> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// The field manager that keeps a Deployment's replicas while the
/// operator lets go of them for an autoscaler.
pub const HANDOVER: &str = "tributary-operator-handover";

/// Whether `manager` owns `d`'s `spec.replicas` by apply.
pub fn owns_replicas(d: &Deployment, manager: &str) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(manager)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec")?.get("f:replicas"))
                .is_some()
    })
}

/// Before the operator's apply leaves out the replicas of Deployment
/// `name` (an autoscaler takes them over), another field manager applies
/// their current value: server-side apply removes a field its only owner
/// stops applying (the Deployment would drop to 1 replica), so someone
/// else must co-own it first.
pub async fn hand_over_replicas(client: &Client, namespace: &str, name: &str) -> kube::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let Some(current) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !owns_replicas(&current, MANAGER) {
        return Ok(());
    }
    let Some(replicas) = current.spec.as_ref().and_then(|s| s.replicas) else {
        return Ok(());
    };
    let keep = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(name, &PatchParams::apply(HANDOVER), &Patch::Apply(&keep))
        .await
        .map(|_| ())
}

/// The object `name`, `None` when there is none.
pub async fn get<K: Child>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> kube::Result<Option<K>> {
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
}

/// One pipeline's children in a namespace: those matching `selector` and
/// controlled by the owner with uid `owner`.
pub struct Owned<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    pub selector: String,
    pub owner: String,
}

impl Owned<'_> {
    /// Deletes the children of kind `K` not among `keep`, returning the
    /// names deleted. Objects the owner does not control are never touched.
    pub async fn prune<K: Child>(&self, keep: &[K]) -> kube::Result<Vec<String>> {
        self.prune_unless(keep, |_| false).await
    }

    /// [`prune`](Self::prune), sparing the objects `spare` says to keep.
    pub async fn prune_unless<K: Child>(
        &self,
        keep: &[K],
        spare: impl Fn(&K) -> bool,
    ) -> kube::Result<Vec<String>> {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        let keep: BTreeSet<String> = keep.iter().map(ResourceExt::name_any).collect();
        let mut deleted = Vec::new();
        for object in api
            .list(&ListParams::default().labels(&self.selector))
            .await?
        {
            let controlled = object
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == self.owner);
            let name = object.name_any();
            if controlled && !keep.contains(&name) && !spare(&object) {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted.push(name),
                    // Someone else deleted it first.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(deleted)
    }
}
