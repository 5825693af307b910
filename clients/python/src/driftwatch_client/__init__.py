"""driftwatch's Python client: log predictions and ground truth, act on retrain events.

```python
from driftwatch_client import Producer, RetrainListener

with Producer("kafka:9092") as p:
    p.log_prediction("fraud", "v3", request_id, {"amount": 12.5, "country": "DE"}, "legit",
                     scores={"legit": 0.93, "fraud": 0.07})
    p.log_ground_truth(request_id, "fraud")

with RetrainListener("kafka:9092", "retrainer", model_ids=["fraud"]) as events:
    events.run(lambda e: start_training(e.model_id, e.train_from, e.train_to))
```

See `clients/python/README.md` for the rules of each call.
"""

from .errors import DecodeError, DeliveryError, DriftwatchError, Failure
from .events import DriftEvent, RetrainEvent, decode_drift_event, decode_retrain_event
from .listener import RetrainListener
from .producer import PARTITIONER, Producer

__all__ = [
    "PARTITIONER",
    "DecodeError",
    "DeliveryError",
    "DriftEvent",
    "DriftwatchError",
    "Failure",
    "Producer",
    "RetrainEvent",
    "RetrainListener",
    "decode_drift_event",
    "decode_retrain_event",
]
