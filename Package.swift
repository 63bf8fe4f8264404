// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Ferry",
    products: [
        .executable(name: "ferry", targets: ["ferry"])
    ],
    targets: [
        // C libraries from Debian, reached through system-library targets.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        // libcrypto and SQLite are linked statically (see the Ferry and MetadataStore targets): only the
        // code used is taken, ~2.5 MiB less resident memory than loading the shared libraries.
        .systemLibrary(name: "CCrypto"),
        .systemLibrary(name: "CSQLite"),
        // Linux calls that Glibc's Swift module does not export (GNU extensions).
        .systemLibrary(name: "CLinux"),

        // The HTTP engine: libmicrohttpd wrapped in Swift. Knows nothing of Ferry.
        .target(
            name: "HTTPServer",
            dependencies: ["CMicroHTTPD"]
        ),
        // SQLite behind a small wrapper: transactions, migrations. Knows nothing of HTTP.
        .target(
            name: "MetadataStore",
            dependencies: ["CSQLite"],
            linkerSettings: [.linkedLibrary(":libsqlite3.a"), .linkedLibrary("m")]
        ),
        // Ferry's features: files API, storage, multipart uploads, tus uploads.
        .target(
            name: "Ferry",
            dependencies: ["HTTPServer", "MetadataStore", "CCrypto", "CLinux"],
            linkerSettings: [.linkedLibrary(":libcrypto.a")]
        ),
        .executableTarget(
            name: "ferry",
            dependencies: ["Ferry", "HTTPServer"],
            // The Swift runtime linked in: ~3 MiB less resident memory (shared/DESIGN.md, decision 7).
            linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(configuration: .release))]
        ),

        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
        .testTarget(name: "MetadataStoreTests", dependencies: ["MetadataStore"]),
        .testTarget(name: "FerryTests", dependencies: ["Ferry", "HTTPServer"]),
    ]
)
