import Foundation
import Testing

@testable import PrewarmRuntime

@Suite("Plain http:// URLs for the pool")
struct PlainHTTPURLTests {
    @Test("http URLs are taken apart into host, port and target; anything else goes to async-http-client")
    func urls() {
        #expect(PlainHTTPURL("http://127.0.0.1:8080/v1/x?uid=1") == .init(host: "127.0.0.1", port: 8080, "/v1/x?uid=1"))
        #expect(PlainHTTPURL("http://ab.internal") == .init(host: "ab.internal", port: 80, "/"))
        #expect(PlainHTTPURL("HTTP://ab.internal?q=1#f") == .init(host: "ab.internal", port: 80, "/?q=1"))
        #expect(PlainHTTPURL("http://[::1]:9000/a") == .init(host: "::1", port: 9000, "/a"))
        for bad in ["https://ab.internal/", "http://user:pw@ab/", "http://:80/", "http://ab:0/", "http://ab:x/", "ab/"]
        {
            #expect(PlainHTTPURL(bad) == nil, "\(bad)")
        }
    }

    @Test(
        "values are percent-encoded byte by byte, unreserved characters kept",
        arguments: [
            ("12345", "12345"), ("a-b.c_d~e", "a-b.c_d~e"), ("a b&c=d/e?", "a%20b%26c%3Dd%2Fe%3F"), ("读", "%E8%AF%BB"),
            ("", ""),
        ])
    func encoding(value: String, encoded: String) {
        #expect(percentEncoded(value) == encoded)
        let unreserved = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        #expect(percentEncoded(value) == value.addingPercentEncoding(withAllowedCharacters: unreserved))
    }
}

extension PlainHTTPURL {
    init(host: String, port: Int, _ target: String) {
        self.init(host: host, port: port, target: target)
    }
}
