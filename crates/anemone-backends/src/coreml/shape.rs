//! Core ML's flexible shapes: a range per dimension, or a list of
//! enumerated shapes. They become anemone [`Dim`]s (fixed where every
//! allowed shape agrees, [`Dim::Any`] elsewhere; Core ML names no
//! dimensions), and they decide whether a request's shape may run.

use anemone_core::Dim;
use std::fmt;

/// The sizes one dimension may take: `lower..=upper`, `upper` `None` when
/// unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest size allowed.
    pub lower: u64,
    /// Largest size allowed; `None` means no limit (Core ML's -1).
    pub upper: Option<u64>,
}

impl SizeRange {
    /// From Core ML's `SizeRange` (an upper bound below 0 is unbounded).
    pub fn from_spec(lower: u64, upper: i64) -> SizeRange {
        SizeRange {
            lower,
            upper: u64::try_from(upper).ok(),
        }
    }

    /// Whether `n` is inside the range.
    pub fn contains(&self, n: u64) -> bool {
        n >= self.lower && self.upper.is_none_or(|u| n <= u)
    }

    /// The dimension it allows: fixed when lower and upper are equal.
    pub fn dim(&self) -> Dim {
        match self.upper {
            Some(u) if u == self.lower => Dim::Fixed(u),
            _ => Dim::Any,
        }
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upper {
            Some(u) if u == self.lower => write!(f, "{u}"),
            Some(u) => write!(f, "{}..{u}", self.lower),
            None => write!(f, "{}..", self.lower),
        }
    }
}

/// The shapes an array (or the sizes an image) may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flexibility {
    /// Only the default shape.
    Fixed,
    /// Any shape with one size per range (same rank).
    Ranges(Vec<SizeRange>),
    /// Exactly one of these shapes.
    Enumerated(Vec<Vec<u64>>),
}

impl Flexibility {
    /// The declared dimensions, given the default shape: fixed where every
    /// allowed shape agrees, [`Dim::Any`] where they differ. `None` when the
    /// rank is unknown (no default shape and no flexibility).
    pub fn dims(&self, default: &[u64]) -> Option<Vec<Dim>> {
        match self {
            Flexibility::Fixed if default.is_empty() => None,
            Flexibility::Fixed => Some(default.iter().map(|&n| Dim::Fixed(n)).collect()),
            Flexibility::Ranges(ranges) => Some(ranges.iter().map(SizeRange::dim).collect()),
            Flexibility::Enumerated(shapes) => {
                let first = shapes.first()?;
                let same_rank = shapes.iter().all(|s| s.len() == first.len());
                if !same_rank {
                    return None;
                }
                Some(
                    (0..first.len())
                        .map(|axis| {
                            let n = first[axis];
                            if shapes.iter().all(|s| s[axis] == n) {
                                Dim::Fixed(n)
                            } else {
                                Dim::Any
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    /// Whether a request may use `shape`, and if not, what is allowed.
    pub fn check(&self, default: &[u64], shape: &[usize]) -> Result<(), String> {
        let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
        match self {
            Flexibility::Fixed if default.is_empty() || shape == default => Ok(()),
            Flexibility::Fixed => Err(format!(
                "the model accepts only shape {}",
                shape_text(default)
            )),
            Flexibility::Ranges(ranges) => {
                if ranges.len() == shape.len()
                    && ranges.iter().zip(&shape).all(|(r, &n)| r.contains(n))
                {
                    Ok(())
                } else {
                    Err(format!("the model accepts shapes {}", self.describe()))
                }
            }
            Flexibility::Enumerated(shapes) => {
                if shapes.contains(&shape) {
                    Ok(())
                } else {
                    Err(format!(
                        "the model accepts only the enumerated shapes {}",
                        self.describe()
                    ))
                }
            }
        }
    }

    /// The allowed shapes as text: `[1..16, 3, 8..]` or `[1, 3] | [2, 3]`;
    /// empty for [`Flexibility::Fixed`].
    pub fn describe(&self) -> String {
        match self {
            Flexibility::Fixed => String::new(),
            Flexibility::Ranges(r) => {
                let parts: Vec<String> = r.iter().map(SizeRange::to_string).collect();
                format!("[{}]", parts.join(", "))
            }
            Flexibility::Enumerated(shapes) => shapes
                .iter()
                .map(|s| shape_text(s))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

/// `[1, 3, 224, 224]`.
pub fn shape_text(shape: &[u64]) -> String {
    let parts: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_give_fixed_where_bounds_meet() {
        let f = Flexibility::Ranges(vec![
            SizeRange::from_spec(1, 16),
            SizeRange::from_spec(3, 3),
            SizeRange::from_spec(8, -1),
        ]);
        assert_eq!(
            f.dims(&[1, 3, 8]),
            Some(vec![Dim::Any, Dim::Fixed(3), Dim::Any])
        );
        assert_eq!(f.describe(), "[1..16, 3, 8..]");
        assert!(f.check(&[1, 3, 8], &[16, 3, 1000]).is_ok());
        assert!(f.check(&[1, 3, 8], &[17, 3, 8]).is_err());
        assert!(f.check(&[1, 3, 8], &[1, 3, 7]).is_err());
        assert!(f.check(&[1, 3, 8], &[1, 3]).is_err());
    }

    #[test]
    fn enumerated_shapes_are_exact() {
        let f = Flexibility::Enumerated(vec![vec![1, 3, 16], vec![1, 3, 32]]);
        assert_eq!(
            f.dims(&[1, 3, 16]),
            Some(vec![Dim::Fixed(1), Dim::Fixed(3), Dim::Any])
        );
        assert!(f.check(&[1, 3, 16], &[1, 3, 32]).is_ok());
        let err = f.check(&[1, 3, 16], &[1, 3, 24]).unwrap_err();
        assert!(err.contains("[1, 3, 16] | [1, 3, 32]"), "{err}");
    }

    #[test]
    fn mixed_rank_enumeration_has_no_rank() {
        let f = Flexibility::Enumerated(vec![vec![4], vec![2, 2]]);
        assert_eq!(f.dims(&[4]), None);
    }

    #[test]
    fn fixed_shape_and_unknown_rank() {
        assert_eq!(Flexibility::Fixed.dims(&[]), None);
        assert!(Flexibility::Fixed.check(&[2, 2], &[2, 2]).is_ok());
        assert!(Flexibility::Fixed.check(&[2, 2], &[4]).is_err());
        assert!(Flexibility::Fixed.check(&[], &[4]).is_ok());
    }
}
