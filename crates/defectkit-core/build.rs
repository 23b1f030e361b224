//! Generates the ONNX protobuf types (ModelProto, GraphProto, ...) from the vendored
//! `src/onnx/onnx.proto` with the pure-Rust protobuf parser: no `protoc` needed.

fn main() {
    println!("cargo:rerun-if-changed=src/onnx/onnx.proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .includes(["src/onnx"])
        .input("src/onnx/onnx.proto")
        .cargo_out_dir("onnx-protos")
        .run_from_script();
}
