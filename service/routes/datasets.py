"""GET /v1/datasets: the datasets jobs can name (metadata only; no data is loaded)."""

from __future__ import annotations

from peng4nn.datasets import list_datasets
from peng4nn.jobs import DatasetPublic, DatasetsPublic
from peng4nn_service.deps import v1_router

router = v1_router("/datasets", "datasets")


@router.get("", response_model=DatasetsPublic)
async def read_datasets() -> DatasetsPublic:
    """List the datasets a job may train on, with input shape and class count."""
    data = [DatasetPublic.model_validate(info.to_dict()) for info in list_datasets()]
    return DatasetsPublic(data=data, count=len(data))
