// swift-tools-version:5.9
import PackageDescription

let package = Package(
  name: "gmmkernels",
  products: [
    // MARK: - Public API
    // The shared library that C, ctypes and numpy users load: the functions of include/gmmkernels.h.
    .library(name: "gmmkernels", type: .dynamic, targets: ["GMMKernelsC"]),
    // The Swift kernels, for Swift users who call them without the C boundary.
    .library(name: "GMMKernels", targets: ["GMMKernels"]),
  ],
  targets: [
    // MARK: - Public API
    .target(
      name: "GMMKernels",
      dependencies: ["CBLAS", "_GMKSupport"]
    ),
    .target(
      name: "GMMKernelsC",
      dependencies: ["GMMKernels", "_GMKSupport"]
    ),

    // MARK: - Implementation details
    // OpenBLAS's cblas.h, found through pkg-config (Debian: libopenblas-dev).
    .systemLibrary(
      name: "CBLAS",
      pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]
    ),
    // The C contract (include/gmmkernels.h) as a Swift module, plus atomics on raw
    // pointers and the per-thread error message.
    .target(name: "_GMKSupport"),

    // MARK: - Tests
    .target(
      name: "_GMKTestSupport",
      dependencies: ["GMMKernels"],
      path: "Tests/_GMKTestSupport"
    ),
    .testTarget(
      name: "GMMKernelsTests",
      dependencies: ["CBLAS", "GMMKernels", "GMMKernelsC", "_GMKSupport", "_GMKTestSupport"]
    ),
  ]
)
