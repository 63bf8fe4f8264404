internal import CSQLite
import Synchronization

/// One SQLite database file, in WAL mode, with versioned migrations.
///
/// Thread-safety: one connection, used only inside `read` / `write`, which hold a lock; safe from any
/// thread. Writes are durable when `write` returns (`synchronous=FULL`): call it from a worker thread,
/// never from an event loop.
public final class Database: @unchecked Sendable {
    // @unchecked: the connection pointer is only touched while `lock` is held.
    private let connection: OpaquePointer
    private let lock = Mutex<Void>(())

    /// Opens (creating if missing) the database at `path`.
    public init(path: String) throws(DatabaseError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let result = sqlite3_open_v2(path, &handle, flags, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw DatabaseError(code: result, message: message, sql: nil)
        }
        connection = handle
        sqlite3_busy_timeout(handle, 5000)
        let connection = Connection(handle: handle)
        _ = try connection.query("PRAGMA journal_mode=WAL")
        try connection.execute("PRAGMA synchronous=FULL")
        try connection.execute("PRAGMA foreign_keys=ON")
    }

    deinit { sqlite3_close(connection) }

    /// Runs `body` in a transaction (`BEGIN IMMEDIATE`), committed when it returns, rolled back when it throws.
    public func write<T>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { _ in
            let connection = Connection(handle: self.connection)
            try connection.execute("BEGIN IMMEDIATE")
            do {
                let result = try body(connection)
                try connection.execute("COMMIT")
                return result
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Runs `body` with the connection, for reads.
    public func read<T>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { _ in try body(Connection(handle: self.connection)) }
    }

    /// Brings the schema up to the last migration. Each migration runs once, in order, in its own
    /// transaction; the version is kept in `PRAGMA user_version`.
    public func migrate(_ migrations: [Migration]) throws {
        let current = try read { try $0.query("PRAGMA user_version").first?["user_version"].integer ?? 0 }
        for migration in migrations.sorted(by: { $0.version < $1.version }) where migration.version > current {
            try write { connection in
                for statement in migration.statements { try connection.execute(statement) }
                try connection.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}

/// A schema change, applied once.
public struct Migration: Sendable {
    public let version: Int64
    public let statements: [String]

    public init(version: Int64, _ statements: [String]) {
        self.version = version
        self.statements = statements
    }
}

/// The connection as seen inside `Database.read` / `write`. Not to be kept beyond the closure.
public struct Connection {
    let handle: OpaquePointer

    /// Runs one SQL statement with `bindings` for its `?` parameters.
    public func execute(_ sql: String, _ bindings: [DatabaseValue] = []) throws(DatabaseError) {
        let statement = try Statement(handle, sql, bindings)
        while try statement.step() {}
    }

    /// Runs one SQL statement and returns its rows.
    public func query(_ sql: String, _ bindings: [DatabaseValue] = []) throws(DatabaseError) -> [DatabaseRow] {
        let statement = try Statement(handle, sql, bindings)
        var rows: [DatabaseRow] = []
        while try statement.step() { rows.append(statement.row()) }
        return rows
    }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }
}

/// A prepared statement, finalized when released.
final class Statement {
    private let handle: OpaquePointer
    private let statement: OpaquePointer
    private let sql: String

    init(_ handle: OpaquePointer, _ sql: String, _ bindings: [DatabaseValue]) throws(DatabaseError) {
        self.handle = handle
        self.sql = sql
        var prepared: OpaquePointer?
        let result = sqlite3_prepare_v2(handle, sql, -1, &prepared, nil)
        guard result == SQLITE_OK, let prepared else {
            throw DatabaseError(code: result, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
        }
        statement = prepared
        for (offset, value) in bindings.enumerated() {
            let index = Int32(offset + 1)
            let bound: Int32
            switch value {
            case .null: bound = sqlite3_bind_null(statement, index)
            case .integer(let integer): bound = sqlite3_bind_int64(statement, index, integer)
            case .text(let text):
                bound = text.utf8CString.withUnsafeBufferPointer {
                    CSQLite_bind_text(statement, index, $0.baseAddress, Int32($0.count - 1))
                }
            case .blob(let bytes):
                bound = bytes.withUnsafeBytes { CSQLite_bind_blob(statement, index, $0.baseAddress, Int32($0.count)) }
            }
            guard bound == SQLITE_OK else {
                throw DatabaseError(code: bound, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
            }
        }
    }

    deinit { sqlite3_finalize(statement) }

    /// Advances; true while a row is ready.
    func step() throws(DatabaseError) -> Bool {
        let result = sqlite3_step(statement)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw DatabaseError(code: result, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
        }
    }

    func row() -> DatabaseRow {
        let count = sqlite3_column_count(statement)
        var columns: [String] = []
        var values: [DatabaseValue] = []
        for index in 0..<count {
            columns.append(String(cString: sqlite3_column_name(statement, index)))
            switch sqlite3_column_type(statement, index) {
            case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(statement, index)))
            case SQLITE_TEXT: values.append(.text(String(cString: sqlite3_column_text(statement, index))))
            case SQLITE_BLOB:
                let length = Int(sqlite3_column_bytes(statement, index))
                if let bytes = sqlite3_column_blob(statement, index), length > 0 {
                    values.append(.blob(Array(UnsafeRawBufferPointer(start: bytes, count: length))))
                } else {
                    values.append(.blob([]))
                }
            default: values.append(.null)
            }
        }
        return DatabaseRow(columns: columns, values: values)
    }
}
