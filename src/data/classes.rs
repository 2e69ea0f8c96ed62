//! Class subsets: train on some classes of a dataset (`kiln train --classes 0-4`), relabelled
//! `0..k-1` with their names kept.

use crate::data::{Dataset, InMemoryDataset};
use crate::error::{Error, Result};

/// Parse a class list: `0-4`, `5,6,7,8,9`, `0-2,7` (ascending ranges, no repeats).
pub fn parse_classes(spec: &str) -> Result<Vec<u32>> {
    let bad = |m: String| crate::error::arg_err("classes", m);
    let mut out: Vec<u32> = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let num = |s: &str| {
            s.trim().parse::<u32>().map_err(|_| Error::Arg {
                op: "classes",
                msg: format!("`{spec}`: `{s}` is not a class number (use e.g. 0-4 or 5,6,7)"),
            })
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let a = num(part)?;
                (a, a)
            }
        };
        if a > b {
            return bad(format!("`{spec}`: range {a}-{b} runs backwards"));
        }
        for c in a..=b {
            if out.contains(&c) {
                return bad(format!("`{spec}`: class {c} is listed twice"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

/// The examples of `data` whose class is in `classes`, relabelled `classes[i]` -> `i` with the
/// class names kept (`"5"`..`"9"` for digits 5-9). Errors on a regression dataset, a class
/// out of range or an empty selection.
///
/// ```
/// use kiln::data::{digits, Dataset, classes::select_classes};
/// let high = select_classes(&digits()?, &[5, 6, 7, 8, 9])?;
/// assert_eq!(high.num_classes(), Some(5));
/// assert_eq!(high.class_names().unwrap()[0], "5");
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn select_classes(data: &InMemoryDataset, classes: &[u32]) -> Result<InMemoryDataset> {
    let bad = |m: String| crate::error::arg_err("classes", m);
    let (Some(labels), Some(k)) = (data.labels(), data.num_classes()) else {
        return bad("a class subset needs classification data".into());
    };
    if classes.is_empty() {
        return bad("no class selected".into());
    }
    if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
        return bad(format!(
            "class {c} does not exist; the data has classes 0..{}",
            k - 1
        ));
    }
    let mut map = vec![None; k];
    for (i, &c) in classes.iter().enumerate() {
        map[c as usize] = Some(i as u32);
    }
    let idx: Vec<usize> = (0..labels.len())
        .filter(|&i| map[labels[i] as usize].is_some())
        .collect();
    let names: Vec<String> = match data.class_names() {
        Some(n) => classes.iter().map(|&c| n[c as usize].clone()).collect(),
        None => classes.iter().map(|c| c.to_string()).collect(),
    };
    let (x, shape, y, _) = data.subset(&idx)?.into_parts();
    let new_labels = match y {
        crate::data::Targets::Classes { labels, .. } => labels
            .iter()
            .map(|&l| map[l as usize].unwrap_or(0))
            .collect(),
        crate::data::Targets::Values { .. } => return bad("regression targets".into()),
    };
    let y = crate::data::Targets::Classes {
        labels: new_labels,
        num_classes: classes.len(),
    };
    let out = InMemoryDataset::new(x, shape, y)?.with_class_names(names)?;
    if out.is_empty() {
        return bad(format!("no example has one of the classes {classes:?}"));
    }
    Ok(out)
}
