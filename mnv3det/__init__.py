"""mnv3det: YOLOv5 detectors with MobileNetV3 backbones."""

__version__ = "0.1.0"
