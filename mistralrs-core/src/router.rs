//! Several models served by name, each with its own engine.

use std::collections::BTreeMap;

use crate::engine::EngineHandle;
use crate::sync::RwLock;
use crate::{Error, Result};

/// Engines by model name. The first model added is the default.
#[derive(Debug)]
pub struct Router {
    engines: RwLock<BTreeMap<String, EngineHandle>>,
    default: RwLock<Option<String>>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self {
            engines: RwLock::new("router", BTreeMap::new()),
            default: RwLock::new("router_default", None),
        }
    }

    /// Serves `engine` under its model's name, replacing any engine of that name.
    pub fn add(&self, engine: EngineHandle) {
        let name = engine.info().name.clone();
        self.default.write().get_or_insert_with(|| name.clone());
        self.engines.write().insert(name, engine);
    }

    /// The engine for `model`, or the default one when no name is given.
    pub fn get(&self, model: Option<&str>) -> Result<EngineHandle> {
        let name = match model {
            Some(name) => name.to_owned(),
            None => self
                .default
                .read()
                .clone()
                .ok_or_else(|| Error::UnknownModel(String::new()))?,
        };
        self.engines
            .read()
            .get(&name)
            .cloned()
            .ok_or(Error::UnknownModel(name))
    }

    /// Names of the served models, sorted.
    pub fn names(&self) -> Vec<String> {
        self.engines.read().keys().cloned().collect()
    }

    /// Every engine, sorted by name.
    pub fn engines(&self) -> Vec<EngineHandle> {
        self.engines.read().values().cloned().collect()
    }

    /// Stops every engine.
    pub fn shutdown(&self) {
        for engine in self.engines() {
            engine.shutdown();
        }
    }
}
