//! Administrative changes under load, each checked against what its acknowledgement
//! promises: `server-kill` and `server-forget` of live daemons (the cluster goes on without
//! them; a killed daemon registers again by itself, a forgotten one is rebuilt on an empty disk
//! and joins as a new server), and a space added, written, and removed while the workload
//! runs (after `add-space` returns, a write to it is not refused as an unknown space; after
//! `rm-space` returns, no server answers for it), and the index of the simulated space removed
//! and added back (rebuilt under load while searches go on).

use std::time::Duration;

use hyperdex::admin::Admin;
use hyperdex::client::{fetch_config, Client, ClientOptions, ClientResult};
use hyperdex::config::ServerState;
use hyperdex::rt;
use hyperdex_model::{ReturnCode, Value};
use madsim::rand::{thread_rng, Rng};

use crate::cluster::{admin_options, SimCluster, COORDINATOR};
use crate::workload::SPACE_NAME;

/// How long an administrative call may take before the nemesis gives up on it (fencing a
/// live server takes about a failure timeout).
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs `change` with a fresh admin connection (from the control node) until it succeeds,
/// for up to `patience` of virtual time; whether it did.
pub async fn with_patience<F, Fut>(cluster: &SimCluster, patience: Duration, change: F) -> bool
where
    F: Fn(Admin) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ClientResult<()>> + Send,
{
    cluster
        .on_control(async move {
            let deadline = rt::now() + patience;
            while rt::now() < deadline {
                let left = deadline.saturating_duration_since(rt::now());
                let attempt = async {
                    change(Admin::connect_addr(COORDINATOR, admin_options()).await?).await
                };
                if let Some(Ok(())) = rt::timeout(left, attempt).await {
                    return true;
                }
                rt::sleep(Duration::from_millis(100)).await;
            }
            false
        })
        .await
}

/// Adds (`on`) or removes the index on `n` of the simulated space, trying for up to
/// `patience` of virtual time; whether it was done.
pub async fn set_index(cluster: &SimCluster, on: bool, patience: Duration) -> bool {
    with_patience(cluster, patience, move |a| async move {
        if on {
            return a.add_index(SPACE_NAME, "n").await;
        }
        for (id, _) in a.list_indices(SPACE_NAME).await? {
            a.rm_index(id).await?;
        }
        Ok(())
    })
    .await
}

/// The id the coordinator gives daemon `i`, if it is available.
async fn id_of(cluster: &SimCluster, i: usize) -> Option<u64> {
    let addr = cluster.daemons[i].addr.clone();
    cluster
        .on_control(async move {
            let config = fetch_config(COORDINATOR, &ClientOptions::default())
                .await
                .ok()?;
            config
                .servers
                .values()
                .find(|s| s.addr == addr && s.state == ServerState::Available)
                .map(|s| s.id.0)
        })
        .await
}

/// Kills (or, with `forget`, forgets) live daemon `i` through the coordinator; whether it
/// was acknowledged. A forgotten daemon is then stopped and rebuilt on an empty disk.
pub async fn remove_live(cluster: &mut SimCluster, i: usize, forget: bool) -> Option<u64> {
    let id = id_of(cluster, i).await?;
    let done = cluster
        .on_control(async move {
            let call = async {
                let admin = Admin::connect_addr(COORDINATOR, admin_options()).await?;
                if forget {
                    admin.server_forget(id).await
                } else {
                    admin.server_kill(id).await
                }
            };
            matches!(rt::timeout(PATIENCE, call).await, Some(Ok(())))
        })
        .await;
    if !done {
        return None;
    }
    if forget {
        cluster.kill_daemon(i);
        cluster.daemons[i].store.wipe();
        cluster.restart_daemon(i);
    }
    Some(id)
}

/// Adds a space, writes to it, removes it, and reads from it; the broken promises, if any.
pub async fn churn_space(cluster: &SimCluster) -> (String, Vec<String>) {
    let partitions = thread_rng().gen_range(1..=4);
    let tolerate = thread_rng().gen_range(0..=1);
    let description = format!(
        "space churn key k attributes int n create {partitions} partitions tolerate {tolerate} failures"
    );
    let what = format!("churn space ({partitions} partitions, tolerate {tolerate})");
    let broken = cluster
        .on_control(async move {
            let mut broken = Vec::new();
            let Some(Ok(admin)) =
                rt::timeout(PATIENCE, Admin::connect_addr(COORDINATOR, admin_options())).await
            else {
                return broken;
            };
            let options = ClientOptions {
                timeout: Duration::from_secs(3),
                ..ClientOptions::default()
            };
            let Ok(client) = Client::connect_with(COORDINATOR, options).await else {
                return broken;
            };
            if let Some(Ok(())) = rt::timeout(PATIENCE, admin.add_space(&description)).await {
                let put = client.put("churn", "a", vec![("n", Value::Int(1))]).await;
                if let Err(e) = put {
                    if e.code == ReturnCode::UnknownSpace {
                        broken.push(format!("a write after add-space returned: {e}"));
                    }
                }
            }
            if let Some(Ok(())) = rt::timeout(PATIENCE, admin.rm_space("churn")).await {
                // Any answer from a server (the object, or none) is an answer for a space
                // that no longer exists; UNKNOWNSPACE (or no answer at all) is not.
                if let Ok(found) = client.get("churn", "a").await {
                    broken.push(format!("a read after rm-space returned {found:?}"));
                }
            }
            broken
        })
        .await;
    (what, broken)
}
