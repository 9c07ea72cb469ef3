#![forbid(unsafe_code)]
#![recursion_limit = "256"]
//! The Docker Engine API over `berth-engine`: routing (with and without a
//! `/v1.xx` prefix), version negotiation, JSON shapes, streams, and one table
//! mapping engine errors to Docker's status codes and messages.

mod archive;
mod container_admin;
mod containers;
mod error;
mod exec;
mod images;
mod networks;
mod query;
mod stream;
mod system;
mod version;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use berth_engine::Engine;

pub use error::ApiError;
pub use version::{MAX_API_VERSION, MIN_API_VERSION};

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

/// The API's routes, without the version prefix (see [`serve`]).
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/auth", post(system::auth))
        .route("/events", get(system::events))
        .route("/system/df", get(images::disk_usage))
        .route(
            "/containers/create",
            post(containers::create).delete(containers::remove_create),
        )
        .route(
            "/containers/json",
            get(containers::list).delete(containers::remove_json),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/containers/{id}", delete(containers::remove))
        .route("/containers/{id}/stats", get(container_admin::stats))
        .route("/containers/{id}/top", get(container_admin::top))
        .route("/containers/{id}/update", post(container_admin::update))
        .route(
            "/containers/{id}/archive",
            get(archive::get_archive)
                .head(archive::head_archive)
                .put(archive::put_archive),
        )
        .route("/containers/{id}/export", get(archive::export))
        .route("/containers/{id}/changes", get(archive::changes))
        .route("/commit", post(archive::commit))
        // GET /containers/stats (Berth: every running container's stats in
        // one array) and POST /containers/prune share the `{id}` path, so
        // DELETE of a container named `stats` or `prune` still removes it.
        .route(
            "/containers/{id}",
            get(container_admin::stats_all).post(container_admin::prune),
        )
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/create", post(images::create))
        .route("/images/get", get(images::get_many))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_by_name)
                .post(images::post_by_name)
                .delete(images::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::not_yet))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::not_yet))
        .route("/networks/{id}/disconnect", post(networks::not_yet))
        .route("/volumes", get(networks::volumes))
        .route("/volumes/create", post(networks::volume_create))
        .route("/volumes/prune", post(networks::volumes_prune))
        .route("/volumes/{name}", get(networks::volume))
        .route("/build", post(networks::build))
        .route("/build/prune", post(networks::build_prune))
        .fallback(error::not_found)
        .with_state(AppState { engine })
}

/// Serves the API on `listener` until `shutdown` resolves; requests with a
/// `/v1.xx` prefix are checked and routed like unversioned ones.
pub async fn serve<L>(
    listener: L,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    use tower::Layer;
    let app = axum::middleware::from_fn(version::strip_version).layer(router(engine));
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
