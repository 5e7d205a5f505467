//! Tests of `wire.rs`: frames each way.

use super::*;

fn body_of(frame: &[u8]) -> Bytes {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "the length counts what follows it");
    Bytes::copy_from_slice(&frame[4..])
}

#[test]
fn an_execute_frame_lists_each_requests_given_tensors_and_carries_their_bytes_in_order() {
    let a = Tensor::from_vec(vec![1, 2], vec![1.5f32, -2.0]).unwrap();
    let s = Tensor::from_strings(vec![2], vec![b"ab".to_vec(), b"".to_vec()]).unwrap();
    let b = Tensor::from_vec(vec![1, 2], vec![3.0f32, 4.0]).unwrap();
    let names = ["x".to_string(), "s".to_string()];
    let (first, second) = ([a, s.clone()], [b, s]);
    let params = [
        ("n".to_string(), Parameter::Int(-3)),
        ("on".to_string(), Parameter::Bool(true)),
        ("t".to_string(), Parameter::String("x".into())),
        ("d".to_string(), Parameter::Double(2.5)),
    ];
    let sequence = anemone_core::CallSequence {
        id: SequenceId::Text("s-1".into()),
        start: true,
        end: true,
    };
    let requests = [
        RequestView {
            inputs: &first,
            id: Some("r1"),
            parameters: &params,
            responder: None,
            absent: &[],
            sequence: None,
            outputs: None,
            timeout: Some(std::time::Duration::from_micros(5_000_000)),
            gone: None,
        },
        RequestView {
            inputs: &second,
            id: None,
            parameters: &[],
            responder: None,
            absent: &[1],
            sequence: Some(&sequence),
            outputs: None,
            timeout: None,
            gone: None,
        },
    ];
    let frame = execute_frame("m", &names, &["y".into()], &requests, None).unwrap();
    let body = body_of(&frame);
    let hlen = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&body[4..4 + hlen]).unwrap();
    assert_eq!(header["op"], "execute");
    let requests = header["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["inputs"][0]["datatype"], "FP32");
    assert_eq!(requests[0]["inputs"][0]["shape"], serde_json::json!([1, 2]));
    assert_eq!(requests[0]["inputs"][1]["byte_size"], 4 + 2 + 4);
    assert_eq!(requests[0]["request_id"], "r1");
    let params: serde_json::Value =
        serde_json::from_str(requests[0]["parameters"].as_str().unwrap()).unwrap();
    assert_eq!(
        params,
        serde_json::json!({"n": -3, "on": true, "t": "x", "d": 2.5})
    );
    assert_eq!(requests[1]["request_id"], "");
    // A sequence's ID and flags (start 1 | end 2); none: 0 and 0.
    assert_eq!(requests[0]["correlation_id"], 0);
    assert_eq!(requests[0]["timeout_us"], 5_000_000);
    assert_eq!(requests[1]["timeout_us"], 0);
    assert_eq!(requests[0]["flags"], 0);
    assert_eq!(requests[1]["correlation_id"], "s-1");
    assert_eq!(requests[1]["flags"], 3);
    assert_eq!(requests[1]["parameters"], "{}");
    assert_eq!(
        requests[1]["requested_output_names"],
        serde_json::json!(["y"])
    );
    let blobs = &body[4 + hlen..];
    let mut expected = Vec::new();
    for v in [1.5f32, -2.0] {
        expected.extend_from_slice(&v.to_le_bytes());
    }
    expected.extend_from_slice(&[2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
    // The second request left its optional input 's' out: not sent.
    for v in [3.0f32, 4.0] {
        expected.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(blobs, &expected[..]);
    let names: Vec<&str> = requests[1]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x"]);
}

#[test]
fn a_reply_gives_each_request_its_outputs_or_its_error() {
    let header = serde_json::json!({
        "ok": true,
        "responses": [
            {"error": null, "outputs": [
                {"name": "y", "datatype": "INT32", "shape": [2], "byte_size": 8},
                {"name": "s", "datatype": "BYTES", "shape": [1], "byte_size": 7},
            ]},
            {"error": "bad x", "code": 3, "outputs": []},
        ]
    });
    let mut blob = Vec::new();
    blob.extend_from_slice(&7i32.to_le_bytes());
    blob.extend_from_slice(&(-1i32).to_le_bytes());
    blob.extend_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c']);
    let bytes = frame(&header, &[&blob]).unwrap();
    let (reply, blobs) = split_body(body_of(&bytes)).unwrap();
    assert!(reply.ok);
    let answers = answers(reply, blobs).unwrap();
    let Answer::Outputs(outputs, _) = &answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(outputs[0].0, "y");
    assert_eq!(outputs[0].1.to_vec::<i32>().unwrap(), [7, -1]);
    assert_eq!(outputs[1].1.as_strings().unwrap(), [b"abc".to_vec()]);
    assert!(
        matches!(&answers[1], Answer::Failed { message, code: 3 } if message == "bad x"),
        "{answers:?}"
    );
}

#[test]
fn a_reply_whose_bytes_do_not_add_up_is_refused_not_read_past_its_end() {
    let header = serde_json::json!({"ok": true, "responses": [{"error": null, "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [4], "byte_size": 16}]}]});
    let bytes = frame(&header, &[&[0u8; 8]]).unwrap();
    let (reply, blobs) = split_body(body_of(&bytes)).unwrap();
    let e = answers(reply, blobs).unwrap_err();
    assert!(e.to_string().contains("only 8 arrived"), "{e}");
    let header = serde_json::json!({"ok": true, "responses": [{"error": null, "outputs": [
        {"name": "s", "datatype": "BYTES", "shape": [1], "byte_size": 4}]}]});
    let bytes = frame(&header, &[&[9, 0, 0, 0]]).unwrap();
    let (reply, blobs) = split_body(body_of(&bytes)).unwrap();
    let e = answers(reply, blobs).unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
    assert!(split_body(Bytes::from_static(&[1, 0, 0, 0])).is_err());
}
