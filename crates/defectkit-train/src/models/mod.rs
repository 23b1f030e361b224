//! The experiment's models, one folder each (`<m>/mod.rs`: the network, its `from_schema`
//! and FLOPs; `<m>/task.rs`: its [`TaskModule`](crate::train::task::TaskModule) and figures;
//! `<m>/README.md`: architecture, config keys, numbers):
//!
//! - [`cnn_scratch`] — model A: ResNet-18's conv1..conv3_x + FC head, from scratch;
//! - [`cnn_distilled`] — model B: the same network distilled from the teacher;
//! - [`unet_ae`] — model C: the U-Net autoencoder with a latent vector;
//! - [`teacher`] — the full ResNet-18 that B learns from.
//!
//! Shared pieces: [`blocks`] (ResNet blocks), [`flops`] (analytic cost), [`weights`]
//! (torchvision checkpoints). [`visit`] is the registry: the one place that maps a config's
//! model to its folder. Adding a model is the checklist in ARCHITECTURE.md.

pub mod blocks;
pub mod cnn_distilled;
pub mod cnn_scratch;
pub mod flops;
pub mod teacher;
pub mod unet_ae;
pub mod weights;

use std::path::PathBuf;

use defectkit_core::config::schema::ModelConfig;

use crate::export::{ExportError, ExportTarget, Network, RunContext};
use crate::train::task::TaskModule;
use crate::train::{JobContext, TaskSetup, TrainError};

pub use blocks::{BasicBlock, Stem, StemConfig};
pub use cnn_distilled::{DistillConfig, DistillLoss, Distiller};
pub use cnn_scratch::{Classifier, ClassifierConfig, ClassifierOutput};
pub use teacher::{load_torchvision, ResNet18, ResNet18Config, TeacherOutput};
pub use unet_ae::{LatentPooling, OutputActivation, UNet, UNetConfig, UNetOutput, UpsampleMode};
pub use weights::{load_torch_weights, WeightsError};

/// One trainable model of the experiment, as its folder provides it.
pub trait ModelEntry {
    /// Its typed config (`conf/model/<name>.yaml`, one variant of [`ModelConfig`]).
    type Schema;
    /// The task module that trains it.
    type Task: TaskModule;

    /// Builds the task and the untrained network for one training job.
    fn setup(
        schema: &Self::Schema,
        ctx: &JobContext<'_>,
    ) -> Result<TaskSetup<Self::Task>, TrainError>;

    /// Loads the trained network `target` of a finished run for export, with the checkpoint
    /// it came from.
    fn load_trained(
        schema: &Self::Schema,
        run: &RunContext<'_>,
        target: ExportTarget,
    ) -> Result<(Network, PathBuf), ExportError>;
}

/// Something done with whichever model a config names (training, loading for export).
pub trait ModelVisitor {
    /// What the visit returns.
    type Output;
    /// Called with the model's entry type and its typed config.
    fn visit<M: ModelEntry>(self, schema: &M::Schema) -> Self::Output;
}

/// The model registry: hands `visitor` the entry of the model `cfg` names.
pub fn visit<V: ModelVisitor>(cfg: &ModelConfig, visitor: V) -> V::Output {
    match cfg {
        ModelConfig::CnnScratch(m) => visitor.visit::<cnn_scratch::CnnScratch>(m),
        ModelConfig::CnnDistilled(m) => visitor.visit::<cnn_distilled::CnnDistilled>(m),
        ModelConfig::UnetAe(m) => visitor.visit::<unet_ae::UnetAe>(m),
    }
}
