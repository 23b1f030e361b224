//! Models: the ResNet-18 stem and classifier (model A), the ResNet-18 teacher, the U-Net
//! autoencoder, distillation, and weight loading.

pub mod classifier;
pub mod distill;
pub mod flops;
pub mod resnet;
pub mod teacher;
pub mod unet;
pub mod weights;

pub use classifier::{Classifier, ClassifierConfig, ClassifierOutput};
pub use distill::{DistillConfig, DistillLoss, Distiller};
pub use resnet::{BasicBlock, Stem, StemConfig};
pub use teacher::{load_torchvision, ResNet18, ResNet18Config, TeacherOutput};
pub use unet::{LatentPooling, OutputActivation, UNet, UNetConfig, UNetOutput, UpsampleMode};
pub use weights::{load_torch_weights, WeightsError};
