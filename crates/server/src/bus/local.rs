//! The in-process bus of a single node: publishing is delivering.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::{Bus, BusSink, Envelope};

#[derive(Default)]
pub struct LocalBus {
    sink: OnceLock<Arc<dyn BusSink>>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, envelope: Envelope) {
        if let Some(sink) = self.sink.get() {
            sink.deliver(Arc::new(envelope));
        }
    }

    fn attach(&self, sink: Arc<dyn BusSink>) {
        let _ = self.sink.set(sink);
    }
}
