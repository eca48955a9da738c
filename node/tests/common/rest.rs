//! A REST client for the tests: JSON in, JSON out, the status checked.

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;

/// A node's REST API at `base` (`http://host:port`).
pub struct Rest {
    pub http: Client,
    pub base: String,
}

impl Rest {
    /// The answer to `method` `path` with the JSON `body`, if any.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the node answers")
    }

    /// The call's JSON answer, after checking its status.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let response = self.call(method.clone(), path, body).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, want, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.json(Method::GET, path, None, StatusCode::OK).await
    }

    pub async fn post(&self, path: &str, body: Value, want: StatusCode) -> Value {
        self.json(Method::POST, path, Some(body), want).await
    }
}
