import AsyncHTTPClient
import BlockingIO
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import TestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Debian's chromium, headless, driven over the DevTools protocol: the page runs its own
/// script as a person's browser would, and the test reads what is drawn and clicks what a
/// person clicks (a mouse press and release at the element's place, text typed into a field).
struct HeadlessChromium {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Starts chromium, opens `url` and runs `body` with the page; chromium is stopped after.
    static func withPage<T: Sendable>(
        _ url: String, _ body: @escaping @Sendable (Page) async throws -> T
    ) async throws -> T {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-chromium-\(UUID())")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let log = profile.appendingPathComponent("chromium.log").path
        let chromium = try ChildProcess.spawn(
            "/usr/bin/chromium",
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--remote-debugging-port=0", "--remote-allow-origins=*", "--user-data-dir=\(profile.path)",
                "--window-size=1400,1000", url,
            ], environment: ProcessInfo.processInfo.environment, standardError: log)
        defer {
            chromium.signal(SIGKILL)
            _ = try? FileManager.default.removeItem(at: profile)
        }
        // chromium writes its DevTools port into the profile once it listens.
        var port = 0
        try await eventually(timeout: .seconds(30), "chromium's DevTools port") {
            let text = (try? String(contentsOf: profile.appendingPathComponent("DevToolsActivePort"), encoding: .utf8))
            port = Int(text?.split(separator: "\n").first ?? "") ?? 0
            return port > 0
        }
        var socket: String?
        try await eventually(timeout: .seconds(30), "chromium's page") {
            guard
                let answer = try? await HTTPClient.shared.execute(
                    HTTPClientRequest(url: "http://127.0.0.1:\(port)/json/list"), timeout: .seconds(5)),
                let body = try? await answer.body.collect(upTo: 1 << 20)
            else { return false }
            let targets =
                (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [[String: Any]]) ?? []
            socket = targets.first { $0["type"] as? String == "page" }?["webSocketDebuggerUrl"] as? String
            return socket != nil
        }
        let result = ResultBox<T>()
        try await WebSocketClient.connect(
            url: socket!, configuration: .init(maxFrameSize: 1 << 22), logger: Logger(label: "chromium")
        ) { inbound, outbound, _ in
            let page = Page(inbound: inbound.messages(maxSize: 1 << 24).makeAsyncIterator(), outbound: outbound)
            await result.set(try await body(page))
            try await outbound.close(.normalClosure, reason: nil)
        }
        guard let value = await result.value else { throw Failure(description: "the page session ended early") }
        return value
    }

    actor ResultBox<T: Sendable> {
        var value: T?
        func set(_ value: T) { self.value = value }
    }

    /// One page's DevTools session: a command at a time, its answer matched by id (events
    /// between are skipped). The test's calls are sequential; nothing else touches it.
    final class Page: @unchecked Sendable {
        private var inbound: WebSocketInboundMessageStream.AsyncIterator
        private let outbound: WebSocketOutboundWriter
        private var next = 0

        init(inbound: WebSocketInboundMessageStream.AsyncIterator, outbound: WebSocketOutboundWriter) {
            self.inbound = inbound
            self.outbound = outbound
        }

        @discardableResult
        func send(_ method: String, _ parameters: [String: any Sendable] = [:]) async throws -> [String: Any] {
            next += 1
            let id = next
            let command: [String: Any] = ["id": id, "method": method, "params": parameters]
            let text = String(decoding: try JSONSerialization.data(withJSONObject: command), as: UTF8.self)
            try await outbound.write(.text(text))
            while let message = try await inbound.next() {
                guard case .text(let answer) = message,
                    let object = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any],
                    object["id"] as? Int == id
                else { continue }
                if let error = object["error"] { throw Failure(description: "\(method): \(error)") }
                return object["result"] as? [String: Any] ?? [:]
            }
            throw Failure(description: "the page closed during \(method)")
        }

        /// The value of a script expression in the page (JSON-able values only).
        private func evaluate(_ expression: String) async throws -> Any? {
            let result = try await send(
                "Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true])
            if let exception = result["exceptionDetails"] { throw Failure(description: "\(expression): \(exception)") }
            return (result["result"] as? [String: Any])?["value"]
        }

        /// A script expression's value as text ("" for null or another type).
        func string(_ expression: String) async throws -> String {
            try await evaluate(expression) as? String ?? ""
        }

        /// The text a person reads in the first element `selector` matches ("" when none).
        func text(_ selector: String) async throws -> String {
            try await evaluate("document.querySelector(\(Self.quoted(selector)))?.innerText ?? ''") as? String ?? ""
        }

        /// A left click in the middle of the element, as the mouse does it.
        func click(_ selector: String) async throws {
            let box =
                try await evaluate(
                    """
                    (() => { const e = document.querySelector(\(Self.quoted(selector))); if (!e) return null;
                      e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect();
                      return [r.x + r.width / 2, r.y + r.height / 2]; })()
                    """) as? [Double]
            guard let box else { throw Failure(description: "nothing to click at \(selector)") }
            for type in ["mousePressed", "mouseReleased"] {
                try await send(
                    "Input.dispatchMouseEvent",
                    ["type": type, "x": box[0], "y": box[1], "button": "left", "clickCount": 1])
            }
        }

        /// Clicks into the field and types `text`.
        func type(_ text: String, into selector: String) async throws {
            try await click(selector)
            try await send("Input.insertText", ["text": text])
        }

        /// Waits until the text of `selector` satisfies `condition`; returns it.
        @discardableResult
        func waitForText(
            _ selector: String, timeout: Duration = .seconds(20), _ what: String,
            _ condition: @Sendable (String) -> Bool
        ) async throws -> String {
            var last = ""
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                last = try await text(selector)
                if condition(last) { return last }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw Failure(description: "timed out waiting for \(what) at \(selector); it shows '\(last)'")
        }

        private static func quoted(_ text: String) -> String {
            String(decoding: try! JSONSerialization.data(withJSONObject: [text]), as: UTF8.self).dropFirst().dropLast()
                .description
        }
    }
}
