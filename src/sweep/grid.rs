//! The grid of a sweep: config keys, each with a list of values, from a TOML file and from
//! `--vary KEY=V1,V2,...`, expanded into points (one value per key) in a fixed order.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One varied key and its values, each as TOML text (what `--set KEY=VALUE` takes).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// A point: one value (TOML text) per varied key, in the axes' order.
pub type Point = Vec<(String, String)>;

/// The axes of a grid file: under `[vary]`, each key (dotted, or nested tables) holds an
/// array of the values to try, e.g.
///
/// ```toml
/// [vary]
/// "hardware.array_rows" = [2, 4]
/// "network.hidden" = [[64, 32], [128, 128]]
/// fixed.weight.bits = [8, 12, 16]
/// ```
pub fn axes_from_file(path: &Path) -> Result<Vec<Axis>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read grid file {}", path.display()))?;
    axes_from_toml(&text).with_context(|| format!("grid file {}", path.display()))
}

/// [`axes_from_file`] on text.
pub fn axes_from_toml(text: &str) -> Result<Vec<Axis>> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| anyhow::anyhow!("not valid TOML: {e}"))?;
    for (k, _) in doc.iter() {
        if k != "vary" {
            bail!("unknown table `{k}`: a grid file has one table, [vary], of key = [values]");
        }
    }
    let Some(vary) = doc.get("vary").and_then(|v| v.as_table_like()) else {
        bail!("no [vary] table: write [vary] then one line per key, e.g. \"hardware.array_rows\" = [2, 4]");
    };
    let mut axes = Vec::new();
    walk(vary, "", &mut axes)?;
    if axes.is_empty() {
        bail!("[vary] names no key: add e.g. \"hardware.array_rows\" = [2, 4]");
    }
    Ok(axes)
}

fn walk(t: &dyn toml_edit::TableLike, prefix: &str, out: &mut Vec<Axis>) -> Result<()> {
    for (k, item) in t.iter() {
        let key = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        if let Some(arr) = item.as_array() {
            let values: Vec<String> = arr.iter().map(value_text).collect();
            if values.is_empty() {
                bail!("`{key}` has an empty list: give at least one value");
            }
            out.push(Axis { key, values });
        } else if let Some(sub) = item.as_table_like() {
            walk(sub, &key, out)?;
        } else {
            bail!(
                "`{key}` is {}, not a list of values: write {key} = [{}]",
                item.type_name(),
                item.as_value().map(value_text).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// A TOML value as the text `--set` reads back.
fn value_text(v: &toml_edit::Value) -> String {
    let mut v = v.clone();
    v.decor_mut().clear();
    v.to_string()
}

/// One `--vary KEY=V1,V2,...`; a list starting with `[` is read as one TOML array, so
/// values that contain commas can be given: `--vary 'network.hidden=[[64], [128, 128]]'`.
pub fn axis_from_arg(arg: &str) -> Result<Axis> {
    let (key, list) = arg.split_once('=').with_context(|| {
        format!("--vary `{arg}`: write KEY=V1,V2,..., e.g. --vary hardware.array_rows=2,4")
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        bail!("--vary `{arg}`: `{key}` is not a dotted config key (e.g. fixed.weight.bits)");
    }
    let list = list.trim();
    let values: Vec<String> = if list.starts_with('[') {
        let v: toml_edit::Value = list
            .parse()
            .map_err(|e| anyhow::anyhow!("--vary `{arg}`: the list is not a TOML array: {e}"))?;
        match v.as_array() {
            Some(a) => a.iter().map(value_text).collect(),
            None => bail!("--vary `{arg}`: the list is not a TOML array"),
        }
    } else {
        list.split(',').map(|s| s.trim().to_string()).collect()
    };
    if values.is_empty() || values.iter().any(|v| v.is_empty()) {
        bail!("--vary `{arg}`: an empty value; write KEY=V1,V2,... with no empty entries");
    }
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

/// Every combination of the axes' values, the first axis varying slowest. A key given twice
/// is refused (the later would silently win).
pub fn expand(axes: &[Axis]) -> Result<Vec<Point>> {
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.key == a.key) {
            bail!(
                "`{}` is varied twice (grid file and --vary, or twice): give its values once",
                a.key
            );
        }
    }
    let mut points: Vec<Point> = vec![Vec::new()];
    for a in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                a.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((a.key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_axes_dotted_and_nested_and_array_values() {
        let axes = axes_from_toml(
            "[vary]\n\"hardware.array_rows\" = [2, 4]\nnetwork.hidden = [[64, 32], [128]]\n\
             [vary.fixed.weight]\nbits = [8, 12]\n",
        )
        .unwrap();
        let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["hardware.array_rows", "network.hidden", "fixed.weight.bits"]
        );
        assert_eq!(axes[1].values, ["[64, 32]", "[128]"]);
        assert_eq!(expand(&axes).unwrap().len(), 8);
    }

    #[test]
    fn bad_grids_are_refused_with_the_fix() {
        let e = |t: &str| format!("{:#}", axes_from_toml(t).unwrap_err());
        assert!(e("[vary]\nhardware.array_rows = 4\n").contains("not a list"));
        assert!(e("[vary]\nx = []\n").contains("empty list"));
        assert!(e("[other]\nx = [1]\n").contains("unknown table `other`"));
        assert!(e("x = [").contains("not valid TOML"));
        assert!(e("").contains("no [vary] table"));
    }

    #[test]
    fn vary_args() {
        let a = axis_from_arg("hardware.array_rows=2, 4,8").unwrap();
        assert_eq!(a.values, ["2", "4", "8"]);
        let a = axis_from_arg("network.hidden=[[64], [128, 128]]").unwrap();
        assert_eq!(a.values, ["[64]", "[128, 128]"]);
        assert!(axis_from_arg("rows").is_err());
        assert!(axis_from_arg("a..b=1").is_err());
        assert!(axis_from_arg("a=1,,2").is_err());
    }

    #[test]
    fn expansion_order_and_duplicates() {
        let axes = vec![
            axis_from_arg("a=1,2").unwrap(),
            axis_from_arg("b=x,y,z").unwrap(),
        ];
        let p = expand(&axes).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            p[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
        let dup = vec![axes[0].clone(), axes[0].clone()];
        assert!(expand(&dup).is_err());
    }
}
