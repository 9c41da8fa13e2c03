"""People and objects as separate instances, numbered stably across frames.

Per-person styles need to tell people apart. With YOLACT the instances come from the
detector; with the selfie model, from the connected parts of its person mask (people who do
not touch). Either way `PeopleTracker` numbers people from the left when they appear and
keeps each number on the same person while they move, so styles do not jump between people.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import torch
import torch.nn.functional as F

# A part of the selfie mask smaller than this share of the frame is not a person.
_MIN_PERSON_AREA = 0.004
# Boxes overlapping at least this much (IoU) are the same person in consecutive frames.
_SAME_PERSON_IOU = 0.3


@dataclass(frozen=True, eq=False)
class Instance:
    """One person or object: its class, its mask at processing size, its box (x1, y1, x2, y2)
    and, for people, the number `PeopleTracker` gave them (0: not numbered)."""

    class_name: str
    mask: torch.Tensor
    box: tuple[float, float, float, float]
    number: int = 0


def selfie_people(mask: torch.Tensor) -> list[Instance]:
    """The separate people in a refined selfie mask [h,w]: its connected parts, left to right."""
    binary = (mask > 0.5).to(torch.uint8).cpu().numpy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    minimum = _MIN_PERSON_AREA * binary.size
    labels_tensor = torch.from_numpy(labels).to(mask.device)
    people = []
    for label in range(1, count):
        x, y, width, height, area = stats[label]
        if area < minimum:
            continue
        part = (labels_tensor == label).to(mask.dtype)
        people.append(Instance("person", part, (x, y, x + width, y + height)))
    return sorted(people, key=lambda person: person.box[0])


def detected_instances(detections, size: tuple[int, int], class_names) -> list[Instance]:
    """YOLACT detections as instances with masks at processing size."""
    if len(detections) == 0:
        return []
    height, width = detections.masks.shape[-2:]
    masks = F.interpolate(detections.masks[:, None].float(), size=size, mode="area")[:, 0]
    scale_x, scale_y = size[1] / width, size[0] / height
    instances = []
    for index in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[index])
        name = class_names[int(detections.class_ids[index])]
        box = (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)
        instances.append(Instance(name, masks[index], box))
    return instances


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


class PeopleTracker:
    """Gives every person a number that stays with them while they are in view.

    Matching is greedy on box overlap with the previous frame. A new person takes the
    lowest free number; several newcomers in one frame are numbered from the left.
    """

    def __init__(self) -> None:
        self._tracks: dict[int, tuple[float, float, float, float]] = {}

    def reset(self) -> None:
        self._tracks.clear()

    def number(self, people: list[Instance]) -> list[Instance]:
        """The same people, numbered."""
        pairs = sorted(
            (
                (box_iou(person.box, box), index, number)
                for index, person in enumerate(people)
                for number, box in self._tracks.items()
            ),
            reverse=True,
        )
        taken: dict[int, int] = {}
        used: set[int] = set()
        for overlap, index, number in pairs:
            if overlap < _SAME_PERSON_IOU:
                break
            if index not in taken and number not in used:
                taken[index] = number
                used.add(number)
        newcomers = sorted(
            (index for index in range(len(people)) if index not in taken),
            key=lambda index: people[index].box[0],
        )
        free = (number for number in range(1, 10_000) if number not in used)
        for index in newcomers:
            taken[index] = next(free)
        people = [replace(person, number=taken[index]) for index, person in enumerate(people)]
        self._tracks = {person.number: person.box for person in people}
        return people


def people_shares(people: list[Instance], softness: float) -> torch.Tensor:
    """Each person's share [P,h,w] of the person mask, so soft edges split between neighbours.

    Each instance mask is blurred and normalised against the others; where no instance
    reaches, the shares are equal.
    """
    from partialstyle.filters import gaussian_blur

    stacked = torch.stack([person.mask for person in people])[None]
    blurred = gaussian_blur(stacked, softness)[0] + 1e-6
    return blurred / blurred.sum(0, keepdim=True)


def union_mask(instances: list[Instance], like: torch.Tensor) -> torch.Tensor:
    if not instances:
        return torch.zeros_like(like)
    return torch.stack([instance.mask for instance in instances]).amax(0)
