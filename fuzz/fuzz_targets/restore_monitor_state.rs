//! Arbitrary records of the monitor's state changelog (cut as `driftwatch_fuzz::records`
//! describes; tombstones left out, as a restore reads only live records) grouped by model and
//! imported into a monitor: a bad key or value is an error, never a panic.
#![no_main]

use driftwatch_core::monitor::snapshot::group_records;
use driftwatch_core::monitor::{Monitor, MonitorConfig};
use driftwatch_fuzz::records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let live = records(data)
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_vec(), v?.to_vec())));
    let (models, _bad) = group_records(live);
    let Ok(mut monitor) = Monitor::new(MonitorConfig::default()) else {
        return;
    };
    for (model, records) in models {
        if monitor.import_model(&model, records).is_ok() {
            let _ = monitor.export_model(&model);
        }
    }
});
