"""FLAME evaluation by linear blend skinning (spec §4.1), as `FLAMEModel.forward` with `no_lmks=True`."""
import torch


def rodrigues(rvec):
    """Axis-angle [J,3] -> rotation matrices [J,3,3]; the angle is |r + 1e-8| as in the official lbs."""
    angle = torch.norm(rvec + 1e-8, dim=1, keepdim=True)
    axis = rvec / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    return torch.eye(3)[None] + sin * k + (1 - cos) * torch.bmm(k, k)


def flame_vertices(flame, shapecode, expcode, posecode, eyecode, scale=5.0):
    """Posed vertices [V,3] times `scale`. Shape from the source; expression, jaw and eyes from the driver;
    neck pose zero. `posecode` = (global 3, jaw 3)."""
    n_shape = shapecode.shape[0]
    n_exp = expcode.shape[0]
    dirs = torch.cat([flame["shapedirs"][:, :, :n_shape], flame["shapedirs"][:, :, 300:300 + n_exp]], dim=2)
    betas = torch.cat([shapecode, expcode])
    pose = torch.cat([posecode[:3], torch.zeros(3), posecode[3:], eyecode])
    v_shaped = flame["v_template"] + torch.einsum("l,vkl->vk", betas, dirs)
    joints = flame["J_regressor"] @ v_shaped
    rots = rodrigues(pose.view(-1, 3))
    n_basis = flame["posedirs"].shape[-1]
    posedirs = flame["posedirs"].reshape(-1, n_basis).T  # [36, V*3]
    pose_feature = (rots[1:] - torch.eye(3)).reshape(-1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(-1, 3)

    parents = flame["kintree_table"][0].long().clone()
    parents[0] = -1
    rel = joints.clone()
    rel[1:] -= joints[parents[1:]]
    local = torch.zeros(len(parents), 4, 4)
    local[:, :3, :3] = rots
    local[:, :3, 3] = rel
    local[:, 3, 3] = 1.0
    chain = [local[0]]
    for i in range(1, len(parents)):
        chain.append(chain[int(parents[i])] @ local[i])
    g = torch.stack(chain)
    # Remove the rest-pose joint location so each transform acts on rest-pose vertices.
    g[:, :3, 3] -= (g[:, :3, :3] @ joints[:, :, None])[..., 0]
    t = (flame["weights"] @ g.reshape(-1, 16)).view(-1, 4, 4)
    v = (t[:, :3, :3] @ v_posed[:, :, None])[..., 0] + t[:, :3, 3]
    return v * scale
