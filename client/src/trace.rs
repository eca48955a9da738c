//! W3C trace context between the caller's `tracing` spans and rota's jobs. With an
//! OpenTelemetry layer installed (`tracing-opentelemetry`), an enqueue made under a span
//! carries that span's `traceparent` (unless the spec names one), and the worker runtime
//! runs each job's handler in a `worker_execute` span under the trace the job came with.
//! Without such a layer there is no context and nothing is added.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's context as a `traceparent`, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The remote context a `traceparent` names; none for anything but a valid version 00 one.
pub fn remote_context(traceparent: &str) -> Option<opentelemetry::Context> {
    let mut parts = traceparent.split('-');
    let (Some("00"), Some(trace_id), Some(span_id), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let span_context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    span_context
        .is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(span_context))
}

/// Gives `span` the job's trace as its parent, if the job came with one.
pub(crate) fn join(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = traceparent.and_then(remote_context) {
        // Fails only when no OpenTelemetry layer is installed: then nothing is traced.
        let _ = span.set_parent(context);
    }
}

/// Requests whose specs may carry trace context.
pub(crate) trait Traceable {
    /// Sets `traceparent` on each spec that has none.
    fn fill_traceparent(&mut self, traceparent: &str);
}

fn fill(spec: Option<&mut crate::proto::JobSpec>, traceparent: &str) {
    if let Some(spec) = spec {
        if spec.traceparent.is_none() {
            spec.traceparent = Some(traceparent.to_owned());
        }
    }
}

impl Traceable for crate::proto::EnqueueRequest {
    fn fill_traceparent(&mut self, traceparent: &str) {
        fill(self.spec.as_mut(), traceparent);
    }
}

impl Traceable for crate::proto::EnqueueBatchRequest {
    fn fill_traceparent(&mut self, traceparent: &str) {
        for spec in &mut self.specs {
            fill(Some(spec), traceparent);
        }
    }
}

impl Traceable for crate::proto::SubmitPlanRequest {
    fn fill_traceparent(&mut self, traceparent: &str) {
        for step in &mut self.steps {
            fill(step.spec.as_mut(), traceparent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_names_a_remote_parent() {
        let context = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("a valid traceparent");
        let span = context.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_remote() && parent.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(remote_context(bad).is_none(), "{bad:?}");
        }
        // Without an OpenTelemetry layer there is no current trace.
        assert_eq!(current_traceparent(), None);
    }
}
