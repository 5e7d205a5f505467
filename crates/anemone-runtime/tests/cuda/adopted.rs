//! Request inputs adopted into page-locked memory as they are admitted
//! (`LoadedModel::adopt_input`, tract-cuda's `cuda_host`): they go up with
//! one DMA each and no host copy when the batch runs, and every request
//! still gets its own rows.

#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn adopted_inputs_go_up_from_their_own_page_locked_blocks() {
    #[cfg(feature = "cuda")]
    on_gpu::check();
}

#[cfg(feature = "cuda")]
mod on_gpu {
    use super::super::*;
    use anemone_backends::tract::cuda_host::{adopted_inputs, is_pinned, pooled_bytes};
    use anemone_backends::tract::cuda_staging::{direct_uploads, mode, Mode};

    /// Each row of `stacked` against the request run alone.
    fn rows_match(what: &str, stacked: &Tensor, alone: &[Tensor]) {
        let rows = stacked.split_batch(&vec![1; alone.len()]).unwrap();
        for (i, (row, want)) in rows.iter().zip(alone).enumerate() {
            let err = rel_l2(row, want);
            println!("resnet18 {what} row {i}: rel. L2 {err:.2e} against the request alone");
            assert!(
                err < 1e-4,
                "{what} row {i}: rel. L2 {err:.2e} against the request alone"
            );
        }
    }

    pub(super) fn check() {
        let Some(backend) = backend() else { return };
        if mode() != Mode::Pinned {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (nothing checked): {STAGING_ENV} asks for {mode:?}, not pinned",
                mode = mode()
            );
            return;
        }
        let (case, model) = resnet18(&backend, &[]);
        let run = &case.runs[0];
        let x = case.inputs(run).remove(0).1;
        let values: Vec<f32> = x.to_vec().unwrap();
        let half =
            Tensor::from_vec(x.shape().to_vec(), values.iter().map(|v| v * 0.5).collect()).unwrap();
        let requests = [x.clone(), half, flipped(&x)];
        // From ordinary memory, one at a time: the rows each request owns.
        let alone: Vec<Tensor> = requests
            .iter()
            .map(|r| model.infer(std::slice::from_ref(r)).unwrap().remove(0))
            .collect();
        assert!(
            rel_l2(&alone[0], &case.tensor(&run.outputs[0].file)) < REL_L2,
            "alone vs ONNX Runtime"
        );
        assert!(
            rel_l2(&alone[1], &alone[2]) > 1e-2,
            "the test's requests must differ"
        );

        let adopted_before = adopted_inputs();
        let adopted: Vec<Tensor> = requests
            .iter()
            .map(|r| {
                model
                    .adopt_input(0, r)
                    .expect("a ResNet-18 input is adopted")
            })
            .collect();
        assert!(adopted_inputs() >= adopted_before + 3);
        for (a, r) in adopted.iter().zip(&requests) {
            assert!(
                is_pinned(a.as_bytes().unwrap()),
                "an adopted input is page-locked"
            );
            assert!(
                !is_pinned(r.as_bytes().unwrap()),
                "the request's own bytes are not"
            );
            assert_eq!(
                a.as_bytes(),
                r.as_bytes(),
                "the copy holds the request's bytes"
            );
            assert_eq!((a.dtype(), a.shape()), (r.dtype(), r.shape()));
        }
        assert!(
            model.adopt_input(0, &adopted[0]).is_none(),
            "an input already page-locked is not copied again"
        );

        // All adopted: one DMA per request, no staging copy.
        let direct = direct_uploads();
        let parts: Vec<&[Tensor]> = adopted.iter().map(std::slice::from_ref).collect();
        let stacked = model.infer_stacked(&parts).unwrap().remove(0);
        assert!(
            direct_uploads() > direct,
            "the adopted batch did not go up directly"
        );
        rows_match("adopted batch", &stacked, &alone);

        // One request not adopted (its block was refused): the batch takes
        // the staging buffer, with the same rows.
        let (direct, staged) = (direct_uploads(), staged_uploads());
        let mixed = [adopted[0].clone(), requests[1].clone(), adopted[2].clone()];
        let parts: Vec<&[Tensor]> = mixed.iter().map(std::slice::from_ref).collect();
        let stacked = model.infer_stacked(&parts).unwrap().remove(0);
        assert!(staged_uploads() > staged, "the mixed batch was not staged");
        assert_eq!(
            direct_uploads(),
            direct,
            "a mixed batch cannot go up directly"
        );
        rows_match("mixed batch", &stacked, &alone);

        // Alone, from its block, twice (the second call replays a graph).
        for _ in 0..2 {
            let direct = direct_uploads();
            let y = model
                .infer(std::slice::from_ref(&adopted[1]))
                .unwrap()
                .remove(0);
            assert!(direct_uploads() > direct);
            let err = rel_l2(&y, &alone[1]);
            assert!(err < 1e-4, "an adopted request alone: rel. L2 {err:.2e}");
        }

        // Blocks go back to the pool with their tensors and are taken again:
        // adopting as many inputs again allocates nothing.
        let pooled = pooled_bytes();
        assert!(
            pooled >= 3 * x.byte_len(),
            "the pool holds the three blocks"
        );
        drop(mixed);
        drop(adopted);
        let again: Vec<Tensor> = requests
            .iter()
            .map(|r| model.adopt_input(0, r).expect("adopted again"))
            .collect();
        assert_eq!(pooled_bytes(), pooled, "the blocks were not reused");
        let parts: Vec<&[Tensor]> = again.iter().map(std::slice::from_ref).collect();
        let stacked = model.infer_stacked(&parts).unwrap().remove(0);
        rows_match("reused blocks", &stacked, &alone);
    }
}
