//! Helpers shared by the fuzz targets.

/// Splits fuzz input into changelog records: each is a key length (1 byte), the key, a value
/// length (2 bytes, big-endian; `ffff` means a tombstone, no value) and the value. A short
/// tail ends the list.
pub fn records(mut data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut out = Vec::new();
    loop {
        let Some((&klen, rest)) = data.split_first() else {
            return out;
        };
        let Some((key, rest)) = rest.split_at_checked(usize::from(klen)) else {
            return out;
        };
        let Some(([a, b], rest)) = rest.split_first_chunk::<2>() else {
            return out;
        };
        let vlen = u16::from_be_bytes([*a, *b]);
        if vlen == u16::MAX {
            out.push((key, None));
            data = rest;
            continue;
        }
        let Some((value, rest)) = rest.split_at_checked(usize::from(vlen)) else {
            return out;
        };
        out.push((key, Some(value)));
        data = rest;
    }
}

/// The inverse of [`records`], for writing seeds (longer keys and values are cut).
pub fn encode_records(records: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let k = &k[..k.len().min(255)];
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        match v {
            None => out.extend_from_slice(&u16::MAX.to_be_bytes()),
            Some(v) => {
                let v = &v[..v.len().min(usize::from(u16::MAX) - 1)];
                out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// A `[[sources]]` entry for the Open Inference Protocol targets: `kind` is the `[seldon]` or
/// `[kserve]` table, `features` one feature mapping, `prediction` the prediction mapping.
pub fn oip_config(kind: &str, features: &str, prediction: &str) -> driftwatch_oip::SourceConfig {
    let text = format!(
        "name = \"fuzz\"\n{kind}[mapping]\nmodel_id = {{ from = \"fixed\", value = \"m\" }}\n\
         model_version = {{ from = \"field\" }}\nfeatures = [{features}]\nprediction = {prediction}\n"
    );
    let config: driftwatch_oip::SourceConfig = toml::from_str(&text).expect("fuzz config parses");
    config.validate().expect("fuzz config is valid");
    config
}
