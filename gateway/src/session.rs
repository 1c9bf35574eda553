//! Sessions through the gateway: it answers Open only. It places the first
//! module (as for an inference request), forwards the Open to a runner
//! holding it, and returns that runner's address; the client then talks to
//! the runner directly, so the gateway is never on a session's data path.

use crate::grpc::GatewayService;
use conduit_proto::session::v1::{
    self as pb, session_client::SessionClient, session_server as server,
};
use conduit_runner::ServeError;
use tonic::{Request, Response, Status};

/// The gateway's session service.
#[derive(Debug, Clone)]
pub struct GatewaySessions {
    service: GatewayService,
}

impl GatewaySessions {
    /// Over the gateway's inference service (its caller checks and routing).
    pub fn new(service: GatewayService) -> Self {
        Self { service }
    }

    /// As a tonic service.
    pub fn into_server(self) -> server::SessionServer<Self> {
        let max = self.service.gateway().serving.config().max_request_bytes;
        server::SessionServer::new(self).max_decoding_message_size(max)
    }
}

fn on_the_runner() -> Status {
    ServeError::FailedPrecondition(
        "sessions run on their runner: send this call to the runner_address Open returned".into(),
    )
    .into()
}

#[tonic::async_trait]
impl server::Session for GatewaySessions {
    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let caller = self.service.caller(request.metadata()).await?;
        let message = request.into_inner();
        if !message.session_id.is_empty() {
            return Err(on_the_runner());
        }
        let Some(first) = message.modules.first() else {
            return Err(ServeError::InvalidInput(
                "name at least one module to open a session".into(),
            )
            .into());
        };
        let gateway = self.service.gateway();
        let manifest = gateway
            .serving
            .resolve_reference_cached(&caller.tenant, first)
            .await?;
        let (mut answer, runner) = self
            .service
            .route(
                &caller,
                &manifest,
                message,
                |router, runner| SessionClient::new(router.channel(runner)),
                async |mut c, r| c.open(r).await,
            )
            .await?;
        let reply = answer.get_mut();
        reply.runner_address = runner.grpc;
        reply.runner_id = runner.id;
        Ok(answer)
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(on_the_runner())
    }

    async fn run(&self, _: Request<pb::RunRequest>) -> Result<Response<pb::RunResponse>, Status> {
        Err(on_the_runner())
    }

    async fn fetch(
        &self,
        _: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        Err(on_the_runner())
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(on_the_runner())
    }

    async fn close(
        &self,
        _: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        Err(on_the_runner())
    }
}
