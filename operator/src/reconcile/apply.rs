//! Writing children: server-side apply with the operator's one field
//! manager, and deleting the children a pipeline no longer wants.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
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
            if controlled && !keep.contains(&name) {
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
