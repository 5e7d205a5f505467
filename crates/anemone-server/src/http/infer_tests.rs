//! Tests of `infer.rs`.

use super::*;
use anemone_core::DataType;

fn headers(length: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(l) = length {
        h.insert(HEADER_LENGTH, HeaderValue::from_str(l).unwrap());
    }
    h
}

#[test]
fn binary_inputs_are_taken_in_order() {
    let json = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},
        {"name":"b","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}},
        {"name":"c","shape":[1],"datatype":"FP32","data":[1.5]}]}"#;
    let mut body = json.to_vec();
    body.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    body.extend_from_slice(&[2, 0, 0, 0, b'h', b'i']);
    let body = Bytes::from(body);
    let r = decode(
        "m".into(),
        None,
        &headers(Some(&json.len().to_string())),
        &body,
        &SharedMemory::default(),
        usize::MAX,
    )
    .unwrap();
    assert_eq!(r.inputs[0].1.to_vec::<i32>().unwrap(), vec![1, 2]);
    assert_eq!(
        r.inputs[0].1.as_bytes().unwrap().as_ptr(),
        body[json.len()..].as_ptr(),
        "numeric binary data is a view of the body, not a copy"
    );
    assert_eq!(r.inputs[1].1.as_strings().unwrap(), &[b"hi".to_vec()]);
    assert_eq!(r.inputs[2].1.dtype(), DataType::F32);
}

#[test]
fn binary_outputs_report_their_sizes() {
    let t = Tensor::from_strings(vec![2], vec![b"ab".to_vec(), vec![]]).unwrap();
    assert_eq!(raw_len(&t), 10);
    assert_eq!(into_raw(t).len(), 10);
    let t = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap();
    assert_eq!(raw_len(&t), 12);
    assert_eq!(&into_raw(t)[..4], &1.0f32.to_le_bytes());
}
