import Testing

@testable import MetadataStore

#if canImport(Glibc)
import Glibc
#endif

@Suite struct DatabaseTests {
    func temporaryPath() -> String {
        var template = Array("/tmp/ferry-db-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        return directory + "/test.db"
    }

    @Test func migrationsRunOnceInOrder() throws {
        let path = temporaryPath()
        let migrations = [
            Migration(version: 1, ["CREATE TABLE a (x INTEGER)"]),
            Migration(version: 2, ["ALTER TABLE a ADD COLUMN y TEXT", "INSERT INTO a VALUES (1, 'one')"]),
        ]
        do {
            let database = try Database(path: path)
            try database.migrate(migrations)
            try database.migrate(migrations)
            let rows = try database.read { try $0.query("SELECT * FROM a") }
            #expect(rows.count == 1)
            #expect(rows[0]["y"] == .text("one"))
        }
        let reopened = try Database(path: path)
        try reopened.migrate(migrations)
        #expect(try reopened.read { try $0.query("PRAGMA user_version") }.first?["user_version"] == .integer(2))
        #expect(try reopened.read { try $0.query("PRAGMA journal_mode") }.first?["journal_mode"] == .text("wal"))
    }

    @Test func valuesRoundTrip() throws {
        let database = try Database(path: temporaryPath())
        try database.migrate([Migration(version: 1, ["CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n TEXT)"])])
        let big = Int64(1) << 40
        try database.write {
            try $0.execute("INSERT INTO t VALUES (?, ?, ?, ?)", [.integer(big), .text("naïve 日本"), .blob([0, 1, 255]), .null])
        }
        let row = try database.read { try $0.query("SELECT * FROM t") }[0]
        #expect(row["i"] == .integer(big))
        #expect(row["s"] == .text("naïve 日本"))
        #expect(row["b"] == .blob([0, 1, 255]))
        #expect(row["n"] == .null)
    }

    @Test func aThrowingWriteRollsBack() throws {
        let database = try Database(path: temporaryPath())
        try database.migrate([Migration(version: 1, ["CREATE TABLE t (i INTEGER)"])])
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try database.write { connection in
                try connection.execute("INSERT INTO t VALUES (1)")
                throw Stop()
            }
        }
        #expect(try database.read { try $0.query("SELECT COUNT(*) AS n FROM t") }[0]["n"] == .integer(0))
    }

    @Test func badSQLIsATypedError() throws {
        let database = try Database(path: temporaryPath())
        #expect {
            try database.read { try $0.query("SELECT * FROM missing") }
        } throws: { error in
            (error as? DatabaseError)?.message.contains("no such table") == true
        }
    }
}
