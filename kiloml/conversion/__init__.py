"""What ``kiloml.convert`` turns a user's model into: one pipeline model stage (trees,
linear, an int8 network) and how its inputs are laid out. One module per origin:
``sklearn_models`` (fitted scikit-learn estimators), ``networks`` (PyTorch, ONNX, TFLite
and the int8 quantization from calibration data), ``keras_layers`` (a Keras model's
layers written as the graph IR)."""
