//! The per-model counters, each with its anemone name and its Triton name,
//! so that `/metrics` writes one value under both.

/// A per-model counter, in anemone's family and in Triton's
/// (`triton::render`): both read the same value.
pub(crate) struct PerModel {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) triton: &'static str,
    pub(crate) triton_help: &'static str,
    /// The value: a count, or with `nanos` a total time in nanoseconds
    /// (anemone's family in seconds, Triton's in microseconds).
    pub(crate) get: fn(&anemone_runtime::ModelMetricsEntry) -> u64,
    pub(crate) nanos: bool,
}

/// Every per-model counter, in the order anemone's families are written;
/// the last four are the response cache's.
pub(crate) const PER_MODEL: [PerModel; 12] = [
    PerModel {
        name: "anemone_inference_request_success_total",
        help: "Successful inference requests",
        triton: "nv_inference_request_success",
        triton_help: "Number of successful inference requests, all batch sizes",
        get: |e| e.metrics.success,
        nanos: false,
    },
    PerModel {
        name: "anemone_inferences_total",
        help: "Inferences performed (batch items)",
        triton: "nv_inference_count",
        triton_help: "Number of inferences performed (does not include cached requests)",
        get: |e| e.metrics.inference_count,
        nanos: false,
    },
    PerModel {
        name: "anemone_inference_executions_total",
        help: "Model executions",
        triton: "nv_inference_exec_count",
        triton_help: "Number of model executions performed (does not include cached requests)",
        get: |e| e.metrics.execution_count,
        nanos: false,
    },
    PerModel {
        name: "anemone_inference_success_duration_seconds_total",
        help: "Cumulative request duration, successes",
        triton: "nv_inference_request_duration_us",
        triton_help: "Cumulative inference request duration in microseconds (includes cached requests)",
        get: |e| e.metrics.request_success.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_inference_queue_duration_seconds_total",
        help: "Cumulative time waiting for a worker",
        triton: "nv_inference_queue_duration_us",
        triton_help: "Cumulative inference queuing duration in microseconds (includes cached requests)",
        get: |e| e.metrics.queue.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_inference_compute_input_duration_seconds_total",
        help: "Cumulative input preparation time",
        triton: "nv_inference_compute_input_duration_us",
        triton_help: "Cumulative compute input duration in microseconds (does not include cached requests)",
        get: |e| e.metrics.compute_input.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_inference_compute_infer_duration_seconds_total",
        help: "Cumulative engine time",
        triton: "nv_inference_compute_infer_duration_us",
        triton_help: "Cumulative compute inference duration in microseconds (does not include cached requests)",
        get: |e| e.metrics.compute_infer.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_inference_compute_output_duration_seconds_total",
        help: "Cumulative output preparation time",
        triton: "nv_inference_compute_output_duration_us",
        triton_help: "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        get: |e| e.metrics.compute_output.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_cache_hits_total",
        help: "Requests answered from the response cache",
        triton: "nv_cache_num_hits_per_model",
        triton_help: "Number of cache hits per model",
        get: |e| e.metrics.cache_hit.count,
        nanos: false,
    },
    PerModel {
        name: "anemone_cache_hit_duration_seconds_total",
        help: "Cumulative time of requests answered from the response cache",
        triton: "nv_cache_hit_duration_per_model",
        triton_help: "Total cache hit duration per model, in microseconds",
        get: |e| e.metrics.cache_hit.ns,
        nanos: true,
    },
    PerModel {
        name: "anemone_cache_misses_total",
        help: "Response cache lookups that found nothing",
        triton: "nv_cache_num_misses_per_model",
        triton_help: "Number of cache misses per model",
        get: |e| e.metrics.cache_miss.count,
        nanos: false,
    },
    PerModel {
        name: "anemone_cache_miss_duration_seconds_total",
        help: "Cumulative time spent looking up and storing missed answers",
        triton: "nv_cache_miss_duration_per_model",
        triton_help: "Total cache miss (insert+lookup) duration per model, in microseconds",
        get: |e| e.metrics.cache_miss.ns,
        nanos: true,
    },
];
