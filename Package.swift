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
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
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
            dependencies: ["CSQLite"]
        ),
        // Ferry's features: files API, storage, multipart uploads, tus uploads.
        .target(
            name: "Ferry",
            dependencies: ["HTTPServer", "MetadataStore", "CCrypto", "CLinux"]
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
