//! Evaluation metrics shared by the data tests and the anomaly stages.
